"""placeholder"""

from sandbox.api import Response


def handle(sandbox, req):
    return Response.json(404, {"error": "not yet"})
