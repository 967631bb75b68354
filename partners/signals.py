"""A user's API tokens die with their password or their account: changing the password, or
deactivating the user, revokes every token of that user (issue 18). Detected on save by
comparing with the stored row, so the admin, `set_password()` and the password-change views
are all covered."""

from django.db.models.signals import post_save, pre_save
from django.dispatch import receiver

from .models import ApiToken, User
from .tokens import api_tokens_revoke_for_user


@receiver(pre_save, sender=User)
def _remember_credentials_change(sender, instance, update_fields=None, **kwargs):
    instance._revoke_tokens_reason = None
    if instance.pk is None or kwargs.get("raw"):
        return
    if update_fields is not None and not {"password", "is_active"} & set(update_fields):
        return  # e.g. last_login on every sign-in: no extra query
    before = User.objects.filter(pk=instance.pk).values("password", "is_active").first()
    if before is None:
        return
    if before["is_active"] and not instance.is_active:
        instance._revoke_tokens_reason = ApiToken.RevokedReason.DEACTIVATED
    elif before["password"] != instance.password and not _is_hash_upgrade(instance, update_fields):
        instance._revoke_tokens_reason = ApiToken.RevokedReason.PASSWORD_CHANGED


@receiver(post_save, sender=User)
def _revoke_tokens(sender, instance, created, **kwargs):
    reason = getattr(instance, "_revoke_tokens_reason", None)
    if reason and not created:
        api_tokens_revoke_for_user(instance.pk, reason=reason)


def _is_hash_upgrade(instance, update_fields) -> bool:
    # check_password() re-hashes with a newer hasher on sign-in: same password, new hash.
    # Its setter clears `_password` and saves only the password; set_password() keeps it.
    return (
        update_fields is not None
        and set(update_fields) == {"password"}
        and (getattr(instance, "_password", None) is None)
    )
