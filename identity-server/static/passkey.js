// Passkeys on the login and account pages. The server sends WebAuthn options as JSON with
// base64url binary fields; this file turns them into the ArrayBuffers navigator.credentials
// wants, and the browser's answer back into base64url JSON in an ordinary form post.
// Loaded as a file (CSP script-src 'self'); the pages work without it, by password.
(function () {
  'use strict';

  function toBuffer(text) {
    var b64 = text.replace(/-/g, '+').replace(/_/g, '/');
    while (b64.length % 4) { b64 += '='; }
    var binary = atob(b64);
    var bytes = new Uint8Array(binary.length);
    for (var i = 0; i < binary.length; i++) { bytes[i] = binary.charCodeAt(i); }
    return bytes.buffer;
  }

  function toBase64url(buffer) {
    var bytes = new Uint8Array(buffer);
    var binary = '';
    for (var i = 0; i < bytes.length; i++) { binary += String.fromCharCode(bytes[i]); }
    return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  }

  function creationOptions(begun) {
    var pk = begun.publicKey;
    pk.challenge = toBuffer(pk.challenge);
    pk.user.id = toBuffer(pk.user.id);
    (pk.excludeCredentials || []).forEach(function (c) { c.id = toBuffer(c.id); });
    return pk;
  }

  function requestOptions(begun) {
    var pk = begun.publicKey;
    pk.challenge = toBuffer(pk.challenge);
    (pk.allowCredentials || []).forEach(function (c) { c.id = toBuffer(c.id); });
    return pk;
  }

  // Transports and extension results are left out: the server needs neither, and an
  // unknown value must not make a good answer unreadable.
  function registrationJSON(cred) {
    return JSON.stringify({
      id: cred.id,
      rawId: toBase64url(cred.rawId),
      type: cred.type,
      response: {
        attestationObject: toBase64url(cred.response.attestationObject),
        clientDataJSON: toBase64url(cred.response.clientDataJSON)
      },
      extensions: {}
    });
  }

  function assertionJSON(cred) {
    var r = cred.response;
    return JSON.stringify({
      id: cred.id,
      rawId: toBase64url(cred.rawId),
      type: cred.type,
      response: {
        authenticatorData: toBase64url(r.authenticatorData),
        clientDataJSON: toBase64url(r.clientDataJSON),
        signature: toBase64url(r.signature),
        userHandle: r.userHandle ? toBase64url(r.userHandle) : null
      },
      extensions: {}
    });
  }

  function start(url, fields) {
    return fetch(url, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams(fields).toString()
    }).then(function (resp) {
      if (!resp.ok) { throw new Error('the server refused to begin: ' + resp.status); }
      return resp.json();
    });
  }

  function showError(form) {
    var box = document.getElementById('passkey-error');
    if (!box) { return; }
    box.textContent = form.getAttribute('data-failed');
    box.hidden = false;
    box.focus();
  }

  function submitAnswer(form, begun, json) {
    form.elements.ceremony.value = begun.ceremony;
    form.elements.credential.value = json;
    form.submit();
  }

  function loginPage(form) {
    var button = document.getElementById('passkey-login');
    var username = document.getElementById('username');
    var url = form.getAttribute('data-start');
    var waiting = null;

    // Autofill (conditional UI): the browser offers the citizen's passkeys in the username
    // field. A convenience only; the button below does the same on request.
    if (PublicKeyCredential.isConditionalMediationAvailable) {
      PublicKeyCredential.isConditionalMediationAvailable().then(function (available) {
        if (!available || !username) { return null; }
        return start(url, {}).then(function (begun) {
          waiting = new AbortController();
          return navigator.credentials.get({
            publicKey: requestOptions(begun),
            mediation: 'conditional',
            signal: waiting.signal
          }).then(function (cred) {
            if (cred) { submitAnswer(form, begun, assertionJSON(cred)); }
          });
        });
      }).catch(function () { /* aborted by the button, or no passkey chosen */ });
    }

    button.addEventListener('click', function () {
      if (waiting) { waiting.abort(); waiting = null; }
      var fields = {};
      if (username && username.value) { fields.username = username.value; }
      start(url, fields).then(function (begun) {
        return navigator.credentials.get({ publicKey: requestOptions(begun) })
          .then(function (cred) { submitAnswer(form, begun, assertionJSON(cred)); });
      }).catch(function () { showError(form); });
    });
  }

  function registerForm(form) {
    form.addEventListener('submit', function (event) {
      event.preventDefault();
      start(form.getAttribute('data-start'), { csrf: form.elements.csrf.value })
        .then(function (begun) {
          return navigator.credentials.create({ publicKey: creationOptions(begun) })
            .then(function (cred) { submitAnswer(form, begun, registrationJSON(cred)); });
        }).catch(function () { showError(form); });
    });
  }

  // The approval of a signing request: an assertion over a challenge the server derived
  // from this request and this document.
  function signForm(form) {
    document.getElementById('passkey-approve').addEventListener('click', function () {
      start(form.getAttribute('data-start'), {}).then(function (begun) {
        return navigator.credentials.get({ publicKey: requestOptions(begun) })
          .then(function (cred) { submitAnswer(form, begun, assertionJSON(cred)); });
      }).catch(function () { showError(form); });
    });
  }

  document.addEventListener('DOMContentLoaded', function () {
    if (!(window.PublicKeyCredential && navigator.credentials && window.fetch)) {
      return; // the page's own notice says to use a password
    }
    var notice = document.getElementById('passkey-unavailable');
    if (notice) { notice.hidden = true; }
    document.querySelectorAll('.needs-passkey').forEach(function (el) { el.hidden = false; });
    var login = document.getElementById('passkey-form');
    if (login) { loginPage(login); }
    var register = document.getElementById('passkey-register');
    if (register) { registerForm(register); }
    var sign = document.getElementById('sign-form');
    if (sign) { signForm(sign); }
  });
}());
