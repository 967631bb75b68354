"""Sync runs: creating them, claiming them (one sync per partner at a time), running them and
recording the outcome. Tasks, views and the admin call these; none of them write SyncRun rows
themselves. Import from the module that owns the name:

- `leases`: the run's and the partner's lease, their heartbeat, and when to try again.
- `runs`: creating, failing and executing a run (execute_run).
- `reaper`: runs whose worker died, queued runs whose task the broker lost.
- `manual`: manual syncs (R10) and their cooldowns.
"""
