// The gallery's one script (the Content-Security-Policy allows no inline script): "Copy prompt" buttons.
"use strict";

function copyWithSelection(text) {
  // navigator.clipboard exists only on https:// and localhost; elsewhere copy through a selection.
  const area = document.createElement("textarea");
  area.value = text;
  area.setAttribute("readonly", "");
  area.className = "offscreen";
  document.body.appendChild(area);
  area.select();
  const copied = document.execCommand("copy");
  area.remove();
  return copied;
}

async function copyPrompt(button) {
  const text = button.dataset.prompt || "";
  let copied = false;
  try {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
      copied = true;
    }
  } catch (error) {
    copied = false;
  }
  if (!copied) {
    copied = copyWithSelection(text);
  }
  button.textContent = copied ? "Copied" : "Select the prompt to copy it";
  window.setTimeout(() => { button.textContent = "Copy prompt"; }, 2000);
}

document.addEventListener("DOMContentLoaded", () => {
  for (const button of document.querySelectorAll("button.copy")) {
    button.addEventListener("click", () => copyPrompt(button));
  }
});
