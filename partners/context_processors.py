from .tenancy import partner_for_user


def partner(request):
    return {"current_partner": partner_for_user(getattr(request, "user", None))}
