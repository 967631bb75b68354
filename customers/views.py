"""Dashboard pages of the partner's customers: the list, archiving and customers created here
(R7, R9)."""

from urllib.parse import urlencode

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.views import View

from partners.tenancy import PartnerRequiredMixin
from partners.views import PartnerFormView, PartnerPageView

from . import services
from .forms import CustomerCreateForm
from .models import Customer


class CustomerListView(PartnerPageView):
    template_name = "customers/list.html"
    nav = "customers"
    title = "Customers"

    def get_context_data(self, **kwargs):
        ctx = super().get_context_data(**kwargs)
        g = self.request.GET
        qs = self.get_partner_queryset(Customer)
        if g.get("archived") == "only":
            qs = qs.filter(archived_at__isnull=False)
        elif g.get("archived") != "all":
            qs = qs.filter(archived_at__isnull=True)
        if g.get("q"):
            qs = qs.filter(name__icontains=g["q"][:100])
        ctx.update(page=Paginator(qs, 50).get_page(g.get("page")), q=g.get("q", ""))
        return ctx


class CustomerArchiveView(PartnerRequiredMixin, View):
    """POST: archive (or, with `unarchive=1`, unarchive) a customer, at once (R9)."""

    def post(self, request, pk):
        customer = get_object_or_404(self.get_partner_queryset(Customer), pk=pk)
        archived = request.POST.get("unarchive") != "1"
        services.customer_archive(partner=self.partner, customer_id=customer.pk, archived=archived)
        messages.success(request, "Customer archived." if archived else "Customer unarchived.")
        return HttpResponseRedirect(reverse("dashboard:customers"))


# Same permission as archiving: any user of the partner. Nothing here talks to Autotask: the
# service marks the row source "local" with no Autotask id, which the sync skips.


class CustomerCreateView(PartnerFormView):
    template_name = "customers/new.html"
    form_class = CustomerCreateForm
    nav = "customers"
    title = "New customer"

    def form_valid(self, form):
        customer = services.customer_create_local(partner=self.partner, **form.cleaned_data)
        messages.success(
            self.request,
            f"Customer {customer.name} created here. It is never sent to Autotask.",
        )
        # Filtered on the new name, so the new row is on the page however long the list is.
        query = urlencode({"q": customer.name})
        return HttpResponseRedirect(f"{reverse('dashboard:customers')}?{query}")
