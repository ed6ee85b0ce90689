// spine-sim's sign-in page: the card signs the page's challenge through the browser bridge
// (`cardgate.authenticate`), the token goes to the provider, the holder picks a role, and the
// browser is sent back to the application with the code (or with the error).
'use strict';
(function () {
  const page = document.getElementById('signin-page');
  const button = document.getElementById('signin');
  const status = document.getElementById('status');
  const errorBox = document.getElementById('error');
  const back = document.getElementById('return');
  const roles = document.getElementById('roles');
  const roleList = document.getElementById('role-list');
  const holderName = document.getElementById('holder-name');
  const base = '/signin/' + encodeURIComponent(page.dataset.request);

  function showError(message, redirect) {
    status.textContent = '';
    errorBox.textContent = message;
    errorBox.hidden = false;
    if (redirect) {
      back.href = redirect;
      back.hidden = false;
      button.hidden = true;
      roles.hidden = true;
    }
  }

  async function post(path, body) {
    const response = await fetch(path, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(body),
      credentials: 'same-origin',
    });
    let answer;
    try {
      answer = await response.json();
    } catch (_) {
      answer = { error: 'server_error', error_description: 'The provider did not answer in JSON.' };
    }
    if (!response.ok) {
      const error = new Error(answer.error_description || answer.error);
      error.code = answer.error;
      error.redirect = answer.redirect;
      throw error;
    }
    return answer;
  }

  function showRoles(answer) {
    status.textContent = '';
    button.hidden = true;
    holderName.textContent = 'Signed in as ' + answer.holder.name + ' (' + answer.holder.uid + ').';
    roleList.replaceChildren();
    for (const role of answer.roles) {
      const choice = document.createElement('button');
      choice.type = 'button';
      choice.id = 'role-' + role.person_roleid;
      choice.dataset.roleId = role.person_roleid;
      choice.textContent = role.role_name + ' at ' + role.org_name + ' (' + role.org_code + ')';
      choice.addEventListener('click', async () => {
        for (const b of roleList.querySelectorAll('button')) b.disabled = true;
        try {
          const done = await post(base + '/role', { role_id: role.person_roleid });
          status.textContent = 'Returning to the application…';
          window.location.assign(done.redirect);
        } catch (e) {
          for (const b of roleList.querySelectorAll('button')) b.disabled = false;
          showError(e.message, e.redirect);
        }
      });
      roleList.appendChild(choice);
    }
    roles.hidden = false;
    const first = roleList.querySelector('button');
    if (first) first.focus();
  }

  button.addEventListener('click', async () => {
    errorBox.hidden = true;
    button.disabled = true;
    status.textContent = 'Asking your card… enter your passcode in the cardgate dialog.';
    let token;
    try {
      token = await cardgate.authenticate({ nonce: page.dataset.nonce });
    } catch (e) {
      // The bridge's refusals (cancelled, no card, origin not allowed...): nothing reached
      // the provider, so the same challenge may be tried again.
      button.disabled = false;
      showError(e && e.message ? e.message : String(e));
      return;
    }
    status.textContent = 'Checking your card…';
    try {
      showRoles(await post(base, { token: token }));
    } catch (e) {
      showError(e.message, e.redirect);
    }
  });
})();
