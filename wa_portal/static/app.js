// wa_portal front-end behaviour. No inline script anywhere (the CSP forbids it).
(function () {
  "use strict";

  function $(sel, root) { return (root || document).querySelector(sel); }
  function $all(sel, root) { return Array.prototype.slice.call((root || document).querySelectorAll(sel)); }
  function refresh(el) { if (el && window.htmx) window.htmx.trigger(el, "wa:refresh"); }

  // Enter sends, Shift+Enter adds a line, in every textarea marked data-enter-submits.
  document.addEventListener("keydown", function (ev) {
    var el = ev.target;
    if (ev.key !== "Enter" || ev.shiftKey || ev.isComposing || !el.matches || !el.matches("textarea[data-enter-submits]")) return;
    ev.preventDefault();
    if (el.value.trim() === "") return;
    var form = el.form;
    if (form) form.requestSubmit();
  });

  // ---- focus kept sensibly after swaps --------------------------------------------------------
  document.addEventListener("htmx:afterSwap", function (ev) {
    var target = ev.detail.target;
    if (target && target.id === "phone-body") {
      var t = document.getElementById("phone-text");
      if (t) t.focus();
    }
    scrollThreads();
    afterContent();
  });
  document.addEventListener("htmx:oobAfterSwap", function () { scrollThreads(); });
  // The composer is replaced after a send: the cursor goes back into the new text box; after an
  // assignment the focus goes back to the actions bar rather than to the top of the page.
  document.addEventListener("htmx:afterSettle", function (ev) {
    var cfg = ev.detail.requestConfig;
    if (!cfg || cfg.verb !== "post") return;
    var path = cfg.path || "";
    if (/\/(messages|attachments)$/.test(path)) {
      refreshConversation(); // ticks may have moved while the send was in flight
      var composer = $("#composer");
      var box = composer && ($(".composer-alert button", composer) || $("#reply-body", composer) || $("#template-pick", composer) || $("#note-body", composer));
      if (box) box.focus();
    } else if (/\/actions$/.test(path)) {
      var first = $(".conv-actions button");
      if (first) first.focus();
    }
  });

  // Keep message lists scrolled to the newest message unless the reader scrolled up.
  var pinned = {};
  function scrollThreads() {
    $all(".thread, .phone-log").forEach(function (list) {
      if (pinned[list.id] === false) return;
      list.scrollTop = list.scrollHeight;
    });
  }
  document.addEventListener("scroll", function (ev) {
    var list = ev.target;
    if (list.classList && (list.classList.contains("thread") || list.classList.contains("phone-log"))) {
      pinned[list.id] = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
    }
  }, true);

  // Refreshed fragments must not steal focus or wipe a half-typed message: skip a GET swap while
  // the person is interacting with the element being replaced (the next refresh catches up).
  document.addEventListener("htmx:beforeSwap", function (ev) {
    var target = ev.detail.target;
    if (!target || ev.detail.requestConfig.verb !== "get") return;
    if (target.contains(document.activeElement) && target.matches(".conv-list, .conv-header, #composer")) {
      ev.detail.shouldSwap = false;
    }
    if (target.matches(".conv-header") && $("details[open]", target)) ev.detail.shouldSwap = false;
  });

  // ---- real time: one SSE stream per page, routed here ------------------------------------------
  var listTimer = null;
  function refreshList() {
    clearTimeout(listTimer);
    listTimer = setTimeout(function () { refresh($("#conversation-list")); }, 150);
  }
  function currentConversation() {
    var t = $(".thread[data-conversation-id]");
    return t ? Number(t.getAttribute("data-conversation-id")) : null;
  }
  // Debounced, and the elements looked up when it fires: events often arrive while our own send
  // is still swapping the thread, and a trigger on the element being replaced would be lost.
  var convTimer = null;
  function refreshConversation() {
    clearTimeout(convTimer);
    convTimer = setTimeout(function () {
      var id = currentConversation();
      if (!id) return;
      refresh(document.getElementById("thread-" + id));
      refresh(document.getElementById("conv-head-" + id));
    }, 150);
  }
  var typingTimers = {};
  function showTyping(data) {
    var el = document.getElementById("typing-" + data.conversation_id);
    if (!el) return;
    typingTimers[data.user_id] = { name: data.name, until: Date.now() + (data.ttl || 6) * 1000 };
    renderTyping(el);
    setTimeout(function () { renderTyping(el); }, (data.ttl || 6) * 1000 + 50);
  }
  function renderTyping(el) {
    var now = Date.now();
    var names = Object.keys(typingTimers).filter(function (k) { return typingTimers[k].until > now; })
      .map(function (k) { return typingTimers[k].name; });
    el.textContent = names.length ? names.join(", ") + (names.length === 1 ? " is typing…" : " are typing…") : "";
  }

  document.addEventListener("sse:message", function (ev) {
    var raw = ev.detail && ev.detail.data;
    if (!raw) return;
    var data;
    try { data = JSON.parse(raw); } catch (e) { return; }
    var rt = $("#realtime");
    var me = rt ? Number(rt.getAttribute("data-me")) : 0;
    var open = currentConversation();
    if (data.event === "typing") {
      if (data.user_id !== me && data.conversation_id === open) showTyping(data);
      return;
    }
    if (data.event === "message" || data.event === "status" || data.event === "conversation") {
      refreshList();
      if (data.conversation_id === open) {
        if (data.event === "message" && data.inbound) { delete typingTimers[data.user_id]; }
        refreshConversation();
      }
      if (data.event === "message" && data.inbound) notifyNew(data);
    }
  });

  // Polling fallback: when the stream cannot be held, refresh every 5 s until it opens again.
  var fallback = null;
  function liveState(state, text) {
    var el = $("#live-status");
    if (el) { el.setAttribute("data-state", state); el.textContent = text; }
  }
  document.addEventListener("htmx:sseOpen", function () {
    if (fallback) { clearInterval(fallback); fallback = null; }
    liveState("live", "Live");
    // Reconnected: catch up with whatever happened while the stream was closed.
    refreshList();
    refreshConversation();
  });
  document.addEventListener("htmx:sseError", function () {
    liveState("polling", "Reconnecting… (updating every few seconds)");
    if (!fallback) {
      fallback = setInterval(function () { refreshList(); refreshConversation(); }, 5000);
    }
  });

  // ---- the count awaiting a human: tab title and badge ----------------------------------------
  var baseTitle = document.title.replace(/^\(\d+\)\s*/, "");
  var lastAwaiting = null;
  function updateAwaiting() {
    var list = $("#conversation-list");
    if (!list) return;
    var n = Number(list.getAttribute("data-awaiting") || 0);
    var label = n >= 100 ? "99+" : String(n);
    document.title = (n ? "(" + label + ") " : "") + baseTitle;
    var badge = $("#awaiting-badge");
    if (badge) {
      badge.textContent = n ? label : "";
      badge.hidden = !n;
      badge.setAttribute("aria-label", n + " awaiting a reply");
    }
    $all("[data-awaiting-count]").forEach(function (c) { c.textContent = n ? label : ""; });
    lastAwaiting = n;
  }

  // ---- browser notifications (permission asked once, from a click) ------------------------------
  var NOTIFY_KEY = "wa-notify-asked";
  function setupNotify() {
    var btn = $("#notify-enable");
    if (!btn || !("Notification" in window)) return;
    if (Notification.permission === "default" && !localStorage.getItem(NOTIFY_KEY)) btn.hidden = false;
    btn.addEventListener("click", function () {
      localStorage.setItem(NOTIFY_KEY, "1");
      Notification.requestPermission().then(function () { btn.hidden = true; });
    });
  }
  var notified = {};
  function notifyNew(data) {
    if (!("Notification" in window) || Notification.permission !== "granted") return;
    if (document.visibilityState === "visible" && data.conversation_id === currentConversation()) return;
    if (notified[data.conversation_id] && Date.now() - notified[data.conversation_id] < 60000) return;
    notified[data.conversation_id] = Date.now();
    // Only a conversation that is waiting for a person is announced: wait for the list to show it.
    setTimeout(function () {
      var row = $('.conv[data-conversation-id="' + data.conversation_id + '"] .badge-awaiting_human');
      if (!row && lastAwaiting === 0) return;
      try {
        var n = new Notification("New patient message", { body: "A conversation is waiting for a reply.", tag: "wa-" + data.conversation_id });
        n.onclick = function () { window.focus(); window.location.href = "/inbox/c/" + data.conversation_id; };
      } catch (e) { /* notifications unavailable in this context */ }
    }, 800);
  }

  // ---- typing presence: at most one ping every 3 s while typing --------------------------------
  var lastPing = 0;
  document.addEventListener("input", function (ev) {
    var el = ev.target;
    if (!el.matches || !el.matches("#reply-body")) return;
    updatePreview(el);
    var wrap = el.closest("#composer");
    if (!wrap || !window.htmx) return;
    var now = Date.now();
    if (now - lastPing < 3000 || el.value.trim() === "") return;
    lastPing = now;
    var note = $('input[name="mode"][value="note"]', wrap);
    if (note && note.checked) return; // writing a note is not a reply in progress
    window.htmx.ajax("POST", wrap.getAttribute("data-typing-url"), { swap: "none", source: wrap });
  });

  // ---- WhatsApp formatting preview: *bold* _italic_ ~strike~ (escaped first) ---------------------
  function escapeHtml(s) {
    return s.replace(/[&<>"']/g, function (c) { return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]; });
  }
  function waFormat(text) {
    return escapeHtml(text)
      .replace(/(^|[^\w*])\*(?=\S)([^*\n]+?)\*(?![\w*])/g, "$1<strong>$2</strong>")
      .replace(/(^|[^\w_])_(?=\S)([^_\n]+?)_(?![\w_])/g, "$1<em>$2</em>")
      .replace(/(^|[^\w~])~(?=\S)([^~\n]+?)~(?![\w~])/g, "$1<s>$2</s>")
      .replace(/\n/g, "<br>");
  }
  function updatePreview(el) {
    var sel = el.getAttribute("data-wa-preview");
    var box = sel && $(sel);
    if (!box) return;
    var body = $(".wa-preview-body", box);
    var show = /[*_~]/.test(el.value);
    box.hidden = !show;
    if (show && body) body.innerHTML = waFormat(el.value);
  }

  // ---- internal-note mode: the composer turns yellow and says so -------------------------------
  document.addEventListener("change", function (ev) {
    var el = ev.target;
    if (el.matches && el.matches('#composer input[name="mode"]')) {
      var form = el.form;
      var note = el.value === "note" && el.checked;
      form.classList.toggle("is-note", note);
      var box = $("#reply-body", form);
      if (box) {
        box.placeholder = note ? "Internal note: only your team sees it" : "Write a reply… (Enter sends, Shift+Enter for a new line)";
        box.focus();
      }
      var btn = $('button[type="submit"]', form);
      if (btn) btn.textContent = note ? "Add note" : "Send";
    }
    // Canned replies: insert the text where the cursor is.
    if (el.matches && el.matches("select[data-canned-target]")) {
      var target = $(el.getAttribute("data-canned-target"));
      if (target && el.value) {
        var start = target.selectionStart || target.value.length;
        target.value = target.value.slice(0, start) + el.value + target.value.slice(target.selectionEnd || start);
        updatePreview(target);
        target.focus();
      }
      el.value = "";
    }
    // Template picker: show the chosen template's fields, disable the others.
    if (el.matches && el.matches("select[data-template-picker]")) {
      $all(".template-vars", el.form).forEach(function (fs) {
        var on = fs.getAttribute("data-template-id") === el.value;
        fs.hidden = !on;
        fs.disabled = !on;
      });
      var shown = $('.template-vars:not([hidden]) input', el.form);
      if (shown) shown.focus();
    }
    // Attachments: type and size checked before upload (the server checks again).
    if (el.matches && el.matches('form.attach input[type="file"]')) checkFile(el);
  });
  document.addEventListener("input", function (ev) {
    var el = ev.target;
    if (!el.matches || !el.matches(".template-vars input[data-var]")) return;
    var fs = el.closest(".template-vars");
    var text = fs.getAttribute("data-body");
    $all("input[data-var]", fs).forEach(function (inp) {
      var v = inp.value.trim();
      text = text.split("{{" + inp.getAttribute("data-var") + "}}").join(v || "{{" + inp.getAttribute("data-var") + "}}");
    });
    var prev = $(".template-preview", fs);
    if (prev) prev.textContent = text;
  });

  function checkFile(input) {
    var form = input.form;
    var err = $(".attach-error", form);
    var file = input.files && input.files[0];
    var msg = "";
    if (file) {
      var accept = (form.getAttribute("data-accept") || "").split(",");
      var isImage = file.type.indexOf("image/") === 0;
      var max = Number(form.getAttribute(isImage ? "data-max-image" : "data-max-document"));
      if (accept.indexOf(file.type) === -1) msg = "This kind of file cannot be sent. Send a JPEG or PNG image, a PDF, Word or Excel file.";
      else if (file.size === 0) msg = "The file is empty.";
      else if (file.size > max) msg = "The file is too large: " + (isImage ? "images" : "documents") + " can be at most " + Math.round(max / 1048576) + " MB.";
    }
    if (err) { err.textContent = msg; err.hidden = !msg; }
    input.setCustomValidity(msg);
    if (msg) input.value = "";
  }
  document.addEventListener("submit", function (ev) {
    var form = ev.target;
    if (form.matches && form.matches("form.attach")) {
      var input = $('input[type="file"]', form);
      if (input) checkFile(input);
      if (input && input.validationMessage) { ev.preventDefault(); ev.stopPropagation(); }
    }
  }, true);

  // ---- the composer follows the 24-hour window while the page is open -------------------------
  function syncComposer() {
    var thread = $(".thread[data-window-open]");
    var composer = $("#composer");
    if (!thread || !composer || !window.htmx) return;
    if (thread.getAttribute("data-window-open") === composer.getAttribute("data-window-open")) return;
    var box = $("#reply-body", composer);
    if (box && box.value.trim() !== "") return; // never wipe a half-written message
    var id = thread.getAttribute("data-conversation-id");
    window.htmx.ajax("GET", "/inbox/c/" + id + "?fragment=composer", { target: "#composer", swap: "outerHTML" });
  }

  function afterContent() {
    updateAwaiting();
    syncComposer();
  }

  document.addEventListener("DOMContentLoaded", function () {
    scrollThreads();
    setupNotify();
    afterContent();
  });
})();
