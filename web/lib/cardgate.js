// PLACEHOLDER (branch web-idp): replaced at merge by the page library of branch web-bridge (issue 13 items 2-3), which owns this file.
// It has the contract's API so that the provider's and the web PMR's pages load and run
// before the bridge exists: every call fails with `extension-missing`, as the real library
// does when the cardgate browser extension is not installed.
'use strict';
(function () {
  const events = new EventTarget();
  function missing() {
    const error = new Error(
      'The cardgate browser extension is not installed or not enabled: ask IT support to install it.');
    error.code = 'extension-missing';
    return Promise.reject(error);
  }
  window.cardgate = Object.freeze({
    /** `{nonce}` -> the AuthToken JSON object (format "cardgate-web:1"). */
    authenticate: function (_options) { return missing(); },
    /** -> the agent's status object. */
    status: function () { return missing(); },
    /** `{roleId}` -> undefined. */
    selectRole: function (_options) { return missing(); },
    /** `{action, ods}` -> `{allowed, reason, message, generation}`. */
    authorise: function (_options) { return missing(); },
    /** 'cardremoved' | 'sessionended'. */
    addEventListener: function (type, listener) { events.addEventListener(type, listener); },
    removeEventListener: function (type, listener) { events.removeEventListener(type, listener); },
  });
})();
