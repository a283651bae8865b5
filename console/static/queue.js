// The review queue's keys: A, B, T (tie) press the form's buttons; S follows the skip link.
// Typing in a text field is left alone.
document.addEventListener('keydown', (event) => {
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  const target = event.target;
  if (target instanceof HTMLInputElement || target instanceof HTMLTextAreaElement) return;
  const control = document.querySelector(`#label-form [data-key="${event.key.toLowerCase()}"]`);
  if (!control) return;
  event.preventDefault();
  control.click();
});
