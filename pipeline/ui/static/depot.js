/* Page Retours: files dropped on the zone go to the file input, then the form is sent.
   Without JavaScript the input and the button do the same. */
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("[data-depot]").forEach(function (zone) {
    var input = zone.querySelector("input[type=file]");
    var form = zone.closest("form");
    var said = zone.querySelector("[data-depot-choix]");
    if (!input || !form) { return; }
    function tell() {
      if (said) {
        var count = input.files ? input.files.length : 0;
        said.textContent = count ? count + " fichier(s) choisi(s)." : "";
      }
    }
    ["dragenter", "dragover"].forEach(function (name) {
      zone.addEventListener(name, function (event) {
        event.preventDefault();
        zone.classList.add("survol");
      });
    });
    ["dragleave", "drop"].forEach(function (name) {
      zone.addEventListener(name, function () { zone.classList.remove("survol"); });
    });
    zone.addEventListener("drop", function (event) {
      event.preventDefault();
      if (!event.dataTransfer || !event.dataTransfer.files.length) { return; }
      input.files = event.dataTransfer.files;
      tell();
      form.requestSubmit();
    });
    input.addEventListener("change", tell);
  });
});
