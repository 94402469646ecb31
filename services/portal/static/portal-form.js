// The upload form: options that cannot go together with the chosen format or flow are disabled
// (a sample of another kind, a visible signature outside PAdES, a typed name in the
// certificate-first flow). The portal refuses them anyway; this only says so before Sign.
(function () {
  'use strict';
  var form = document.getElementById('sign-form');
  if (!form) { return; }
  var format = form.querySelector('#format');
  var flow = form.querySelector('#flow');
  var note = document.getElementById('form-note');
  function update() {
    var off = [];
    form.querySelectorAll('[data-formats]').forEach(function (input) {
      var formats = input.getAttribute('data-formats').split(' ');
      var flows = (input.getAttribute('data-flows') || flow.value).split(' ');
      var allowed = formats.indexOf(format.value) !== -1 && flows.indexOf(flow.value) !== -1;
      input.disabled = !allowed;
      if (!allowed && input.type === 'checkbox') { input.checked = false; }
      if (!allowed) { off.push(input.value && input.type === 'checkbox' && input.name === 'samples' ? input.value : input.name); }
    });
    note.textContent = off.length ? 'Not available with ' + format.options[format.selectedIndex].text + ' / ' +
      flow.options[flow.selectedIndex].text + ': ' + off.join(', ') + '.' : '';
  }
  format.addEventListener('change', update);
  flow.addEventListener('change', update);
  update();
})();
