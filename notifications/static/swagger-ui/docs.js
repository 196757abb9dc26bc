// Render /openapi.json with the packaged Swagger UI; nothing is loaded from other hosts.
window.addEventListener("load", function () {
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.getAttribute("data-url"),
    dom_id: "#swagger-ui",
    deepLinking: true,
    // The default would send the document to an online validator.
    validatorUrl: null,
    // Send the session cookie along with "Try it out" requests.
    withCredentials: true,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
});
