// Cohort console: progressive enhancement only. Every page works without this file;
// it adds modal focus handling, confirm prompts and copy buttons.
(function () {
  "use strict";

  var FOCUSABLE = 'a[href], button:not([disabled]), input:not([disabled]):not([type="hidden"]),' +
    ' select:not([disabled]), textarea:not([disabled]), [tabindex]:not([tabindex="-1"])';

  function visible(list) {
    return Array.prototype.filter.call(list, function (el) {
      return el.offsetWidth > 0 || el.offsetHeight > 0 || el.getClientRects().length > 0;
    });
  }

  // A server-rendered modal is open when it is in the page: keep focus inside it.
  function setupModal() {
    var modal = document.querySelector(".modal");
    if (!modal) return;
    var backdrop = modal.closest(".modal-backdrop") || modal;

    // The page behind the modal stops taking focus and clicks.
    Array.prototype.forEach.call(document.body.children, function (el) {
      if (el !== backdrop && !el.contains(backdrop) && el.tagName !== "SCRIPT") el.inert = true;
    });

    var body = modal.querySelector(".modal-body") || modal;
    var start = modal.querySelector('[aria-invalid="true"]') || modal.querySelector("[autofocus]") ||
      visible(body.querySelectorAll(FOCUSABLE))[0] || visible(modal.querySelectorAll(FOCUSABLE))[0];
    if (!start) {
      modal.setAttribute("tabindex", "-1");
      start = modal;
    }
    start.focus();

    document.addEventListener("keydown", function (e) {
      if (e.key === "Escape") {
        var cancel = modal.querySelector("a.modal-cancel");
        if (cancel) { e.preventDefault(); window.location.assign(cancel.href); }
        return;
      }
      if (e.key !== "Tab") return;
      var items = visible(modal.querySelectorAll(FOCUSABLE));
      if (!items.length) return;
      var first = items[0], last = items[items.length - 1];
      var inside = modal.contains(document.activeElement);
      if (e.shiftKey && (document.activeElement === first || !inside)) {
        e.preventDefault();
        last.focus();
      } else if (!e.shiftKey && (document.activeElement === last || !inside)) {
        e.preventDefault();
        first.focus();
      }
    });
  }

  // <form data-confirm="Delete this patient?"> (or on the submit button) asks first.
  document.addEventListener("submit", function (e) {
    var by = e.submitter && e.submitter.getAttribute("data-confirm");
    var message = by || e.target.getAttribute("data-confirm");
    if (message && !window.confirm(message)) e.preventDefault();
  });

  // <code data-copy>token</code> (or data-copy="value") gets a Copy button.
  function setupCopy() {
    if (!navigator.clipboard || !window.isSecureContext) return;
    Array.prototype.forEach.call(document.querySelectorAll("[data-copy]"), function (box) {
      var button = document.createElement("button");
      button.type = "button";
      button.className = "btn btn-sm copy-button";
      button.textContent = "Copy";
      button.setAttribute("aria-live", "polite");
      button.addEventListener("click", function () {
        var text = box.getAttribute("data-copy") || box.textContent.trim();
        navigator.clipboard.writeText(text).then(function () {
          button.textContent = "Copied";
        }, function () {
          button.textContent = "Copy failed: select the text";
        });
        window.setTimeout(function () { button.textContent = "Copy"; }, 2500);
      });
      box.insertAdjacentElement("afterend", button);
    });
  }

  // A bulk bar shows only the fields its chosen action needs: each field says which
  // actions it serves in data-shows-for (without this file, all of them show).
  function setupActionFields() {
    Array.prototype.forEach.call(document.querySelectorAll("select[name=action]"), function (select) {
      var form = select.form;
      if (!form) return;
      var fields = form.querySelectorAll("[data-shows-for]");
      function update() {
        Array.prototype.forEach.call(fields, function (el) {
          var wanted = el.getAttribute("data-shows-for").split(" ").indexOf(select.value) >= 0;
          el.hidden = !wanted;
        });
      }
      select.addEventListener("change", update);
      update();
    });
  }

  setupModal();
  setupCopy();
  setupActionFields();
})();

// Times on the server-rendered pages follow the browser's time zone: remember it in a
// cookie the server reads (without this script, times show in UTC and say so).
(function () {
  "use strict";
  try {
    var tz = Intl.DateTimeFormat().resolvedOptions().timeZone;
    if (!tz) return;
    var current = (document.cookie.match(/(?:^|; )tz=([^;]*)/) || [])[1];
    if (current && decodeURIComponent(current) === tz) return;
    document.cookie = "tz=" + encodeURIComponent(tz) + "; path=/; max-age=31536000; samesite=lax";
    // The page just drawn used the old zone; draw it again in the right one.
    if (document.querySelector("[data-times]")) location.reload();
  } catch (e) { /* no Intl: stay in UTC */ }
})();
