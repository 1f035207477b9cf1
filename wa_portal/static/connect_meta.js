// Meta embedded signup on /settings/connections/new/meta (templates/settings/connect_form.html).
//
// Two things come back from Facebook, in either order: FB.login's callback with a short-lived `code`,
// and a window `message` from a *.facebook.com origin with the ids of the number the admin chose
// ({"type":"WA_EMBEDDED_SIGNUP","event":"FINISH","data":{"phone_number_id","waba_id","business_id"}}).
// Once both are here the form (CSRF token, PIN) is posted to /settings/connections/meta/signup; the
// server exchanges the code, subscribes the WABA, registers the number and answers with the result.
// Docs: https://developers.facebook.com/docs/whatsapp/embedded-signup/implementation
(function () {
  "use strict";

  var root = document.getElementById("meta-signup");
  if (!root) return;
  var form = document.getElementById("meta-signup-form");
  var button = root.querySelector("[data-signup-button]");
  var statusLine = root.querySelector("[data-signup-status]");
  var pin = form.elements.namedItem("pin");
  var code = "";
  var ids = null;
  var sent = false;
  var explained = false; // a CANCEL / ERROR message already told the admin what happened

  function say(text) {
    statusLine.textContent = text;
  }

  function isFacebook(origin) {
    // https://www.facebook.com, https://web.facebook.com, https://facebook.com … but not facebook.com.evil.example
    return /^https:\/\/([a-z0-9-]+\.)*facebook\.com$/.test(origin);
  }

  function submitWhenReady() {
    if (sent || !code || !ids) return;
    sent = true;
    form.elements.namedItem("code").value = code;
    form.elements.namedItem("phone_number_id").value = ids.phone_number_id || "";
    form.elements.namedItem("waba_id").value = ids.waba_id || "";
    form.elements.namedItem("business_id").value = ids.business_id || "";
    say("Facebook is done. Registering the number with WhatsApp…");
    button.disabled = true;
    form.submit();
  }

  window.addEventListener("message", function (event) {
    if (!isFacebook(event.origin)) return;
    var msg = event.data;
    if (typeof msg === "string") {
      try {
        msg = JSON.parse(msg);
      } catch (e) {
        return; // the SDK's own messages are not JSON
      }
    }
    if (!msg || msg.type !== "WA_EMBEDDED_SIGNUP") return;
    var data = msg.data || {};
    if (msg.event === "FINISH" || (msg.event && msg.event.indexOf("FINISH") === 0 && data.phone_number_id)) {
      ids = data;
      submitWhenReady();
    } else if (msg.event && msg.event.indexOf("FINISH") === 0) {
      explained = true;
      say("Facebook finished without a phone number. Click “Connect with Facebook” again and add or choose the clinic's number.");
    } else if (msg.event === "CANCEL") {
      explained = true;
      say("The Facebook window was closed before the end" +
        (data.current_step ? " (at “" + data.current_step + "”)" : "") +
        ". Nothing was saved; click “Connect with Facebook” to start again.");
    } else if (msg.event === "ERROR") {
      explained = true;
      say("Facebook reported a problem: " + (data.error_message || "no details") +
        ". Nothing was saved; try again, or enter the details by hand below.");
    }
  });

  button.addEventListener("click", function () {
    if (!/^\d{6}$/.test(pin.value)) {
      say("Enter the 6-digit two-step verification PIN first.");
      pin.focus();
      return;
    }
    if (!window.FB) {
      say("Facebook could not be reached from this browser. Try again later, or enter the details by hand below.");
      return;
    }
    code = "";
    ids = null;
    sent = false;
    explained = false;
    say("Continue in the Facebook window…");
    window.FB.login(
      function (response) {
        if (response && response.authResponse && response.authResponse.code) {
          code = response.authResponse.code;
          if (!ids) say("Facebook signed you in; waiting for the number you chose…");
          submitWhenReady();
        } else if (!ids && !explained) {
          say("The Facebook sign-in did not finish. Nothing was saved; click “Connect with Facebook” to try again.");
        }
      },
      {
        config_id: root.dataset.configId,
        response_type: "code",
        override_default_response_type: true,
        extras: { setup: {}, sessionInfoVersion: "3" },
      }
    );
  });

  // The SDK calls this once loaded; the button works from then on.
  window.fbAsyncInit = function () {
    window.FB.init({ appId: root.dataset.appId, autoLogAppEvents: true, xfbml: false, version: root.dataset.version });
    button.disabled = false;
  };
  if (window.FB) {
    window.fbAsyncInit();
  } else {
    var sdk = document.createElement("script");
    sdk.src = root.dataset.sdkUrl;
    sdk.async = true;
    sdk.crossOrigin = "anonymous";
    sdk.onerror = function () {
      say("Facebook could not be reached from this browser. You can enter the details by hand below.");
    };
    document.head.appendChild(sdk);
  }
})();
