// Forms and buttons that need a confirmation carry data-confirm="question" (no inline
// handlers: the Content-Security-Policy allows scripts from our own origin only).
document.addEventListener("submit", (event) => {
  const form = event.target;
  const submitter = event.submitter;
  const question = (submitter && submitter.dataset.confirm) || form.dataset.confirm;
  if (question && !window.confirm(question)) {
    event.preventDefault();
    event.stopImmediatePropagation();
  }
}, true);
