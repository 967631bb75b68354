// Connect / Edit Autotask (templates/integrations/connect.html): pickers loaded from the
// partner's own Autotask, the preview, and a working indicator while the form is checked.
(function () {
  const form = document.getElementById("connect-form");
  if (!form) return;
  const csrf = form.querySelector("input[name=csrfmiddlewaretoken]").value;
  const out = document.getElementById("preview-result");
  const optionsStatus = document.getElementById("options-status");

  // --- working indicator: Autotask takes a few seconds to answer ---------------------------
  const submit = document.getElementById("connect-button");
  const working = document.getElementById("connect-working");
  form.addEventListener("submit", function () {
    submit.disabled = true;
    form.setAttribute("aria-busy", "true");
    working.hidden = false;
  });
  window.addEventListener("pageshow", function () {  // back button: the page is live again
    submit.disabled = false;
    form.removeAttribute("aria-busy");
    working.hidden = true;
  });

  function credentials() {
    const data = new FormData(form);
    return {username: data.get("username") || "", secret: data.get("secret") || ""};
  }

  async function post(url, body) {
    const resp = await fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": csrf},
      body: JSON.stringify(body),
    });
    const json = await resp.json().catch(() => ({}));
    return {ok: resp.ok, json: json};
  }

  function labelOf(key) {
    const label = form.querySelector(`label[for="id_${key}"]`) || document.getElementById("label-" + key);
    return label ? label.textContent.trim() : key.replace(/_/g, " ");
  }

  // --- pickers --------------------------------------------------------------------------------
  function ids(value) {
    return (value || "").split(/[,;]/).map((s) => s.trim()).filter(Boolean);
  }

  function picker(key, items) {
    // A multiple select that writes the chosen ids into the (now hidden) id box.
    const input = document.getElementById("id_" + key);
    if (!input) return;
    const old = document.getElementById(input.id + "_picker");
    if (old) old.remove();
    const chosen = new Set(ids(input.value));
    const select = document.createElement("select");
    select.multiple = true;
    select.id = input.id + "_picker";
    select.size = Math.min(8, Math.max(3, items.length));
    for (const item of items) {
      const option = document.createElement("option");
      option.value = String(item.id);
      option.textContent = item.name;
      option.selected = chosen.has(String(item.id));
      select.appendChild(option);
    }
    select.addEventListener("change", function () {
      input.value = Array.from(select.selectedOptions).map((o) => o.value).join(", ");
    });
    input.hidden = true;
    input.after(select);
    const label = form.querySelector(`label[for="${input.id}"]`);
    if (label) label.htmlFor = select.id;
    const help = input.parentElement.querySelector("small");
    if (help) help.textContent = "Hold Ctrl (⌘ on a Mac) to pick several.";
  }

  function companyTypes(items) {
    const box = document.getElementById("company-type-choices");
    const chosen = new Set(Array.from(box.querySelectorAll("input:checked")).map((i) => i.value));
    box.textContent = "";
    items.forEach(function (item, n) {
      const label = document.createElement("label");
      label.className = "choice";
      const input = document.createElement("input");
      input.type = "checkbox";
      input.name = "company_types";
      input.value = String(item.id);
      input.id = "id_company_types_" + n;
      input.checked = chosen.has(String(item.id));
      label.append(input, " " + item.name);
      box.appendChild(label);
    });
  }

  document.getElementById("load-options").addEventListener("click", async function () {
    const creds = credentials();
    if ((!creds.username || !creds.secret) && form.dataset.stored !== "1") {
      optionsStatus.textContent = "Enter the Username (Key) and Password (Secret) first.";
      return;
    }
    this.disabled = true;
    optionsStatus.textContent = "Asking your Autotask…";
    const {ok, json} = await post(form.dataset.optionsUrl, creds);
    this.disabled = false;
    if (!ok) {
      optionsStatus.textContent = json.detail || "Autotask's lists could not be loaded; you can still enter ids.";
      return;
    }
    companyTypes(json.company_types);
    if (json.companies_complete) {
      picker("include_company_ids", json.companies);
      picker("exclude_company_ids", json.companies);
    }
    picker("payment_terms", json.payment_terms);
    optionsStatus.textContent = json.companies_complete
      ? `Loaded from your Autotask: ${json.company_types.length} company types, ${json.companies.length} companies, ${json.payment_terms.length} payment terms.`
      : `Loaded from your Autotask. You have more than ${json.companies.length} companies: enter company ids in the boxes.`;
  });

  // --- preview --------------------------------------------------------------------------------
  function clearPreviewErrors() {
    for (const el of form.querySelectorAll(".errorlist.from-preview")) el.remove();
  }

  function showFieldError(key, text) {
    const input = document.getElementById("id_" + key);
    const holder = document.getElementById("field-" + key) || (input && (input.closest(".field") || input.closest("label")));
    if (!holder) return;
    const div = document.createElement("div");
    div.className = "errorlist from-preview";
    div.setAttribute("role", "alert");
    div.textContent = text;
    holder.appendChild(div);
  }

  document.getElementById("preview-button").addEventListener("click", async function () {
    const data = new FormData(form);
    const body = Object.assign(credentials(), {
      filters: {
        company_types: data.getAll("company_types").map(Number),
        include_company_ids: ids(data.get("include_company_ids")),
        exclude_company_ids: ids(data.get("exclude_company_ids")),
        active_only: data.get("active_only") === "on", include_voided: data.get("include_voided") === "on",
        invoices_from: data.get("invoices_from") || null, min_total: data.get("min_total") || null,
        payment_terms: ids(data.get("payment_terms")),
      },
    });
    clearPreviewErrors();
    out.textContent = "Asking Autotask…";
    const {ok, json} = await post(form.dataset.previewUrl, body);
    if (ok) {
      out.textContent = `These settings would bring in ${json.customers} customers and up to ${json.invoices} invoices.`;
      return;
    }
    const errors = (json.errors && json.errors.filters) || {};
    const named = Object.entries(errors).map(function ([key, msgs]) {
      const text = [].concat(msgs).join(" ");
      showFieldError(key, text);
      return `${labelOf(key)}: ${text}`;
    });
    out.textContent = (json.detail || "Preview failed.") + (named.length ? " " + named.join("; ") : "");
  });
})();
