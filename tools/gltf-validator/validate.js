// Validate one .glb/.gltf file with the Khronos glTF validator; prints the JSON report on stdout.
// Usage: node validate.js FILE        (exit code 0 when the report has no errors, 1 otherwise)
"use strict";
const fs = require("fs");
const validator = require("gltf-validator");

const file = process.argv[2];
if (!file) { console.error("usage: node validate.js FILE"); process.exit(2); }
validator.validateBytes(new Uint8Array(fs.readFileSync(file)), { maxIssues: 200 })
  .then(report => {
    console.log(JSON.stringify(report, null, 1));
    process.exit(report.issues.numErrors === 0 ? 0 : 1);
  })
  .catch(error => { console.error(String(error)); process.exit(2); });
