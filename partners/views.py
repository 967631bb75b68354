from django.views.generic import TemplateView

from .models import User
from .tenancy import PartnerRequiredMixin


class PartnerPageMixin(PartnerRequiredMixin):
    """A dashboard page of the signed-in partner (with a TemplateView, FormView, …). `nav`
    marks the active navigation entry."""

    nav = ""
    title = ""

    def get_context_data(self, **kwargs):
        ctx = super().get_context_data(**kwargs)
        ctx.update(nav=self.nav, title=self.title, partner=self.partner)
        return ctx


class PartnerPageView(PartnerPageMixin, TemplateView):
    pass


class DashboardHomeView(PartnerPageView):
    template_name = "dashboard/home.html"
    nav = "home"
    title = "Overview"

    def get_context_data(self, **kwargs):
        ctx = super().get_context_data(**kwargs)
        ctx["team"] = self.get_partner_queryset(User).order_by("username")
        return ctx
