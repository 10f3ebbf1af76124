// Mocha's spec output, plus one closing line in the plain form CI tools read:
// "tests: N passed, N failed, N skipped". With STRANGLER_TEST_SUMMARY set to a
// file name, the three numbers are also written there ("N N N"), so that
// scripts/test.sh can add up its runs (one per Node version) in a last line.
'use strict';
const { writeFileSync } = require('node:fs');
const Mocha = require('mocha');
const { EVENT_RUN_END } = Mocha.Runner.constants;

class SpecWithSummary extends Mocha.reporters.Spec {
  constructor(runner, options) {
    super(runner, options);
    runner.once(EVENT_RUN_END, () => {
      const s = runner.stats ?? {};
      const [passed, failed, skipped] = [s.passes ?? 0, s.failures ?? 0, s.pending ?? 0];
      process.stdout.write(`\ntests: ${passed} passed, ${failed} failed, ${skipped} skipped\n`);
      if (process.env.STRANGLER_TEST_SUMMARY) writeFileSync(process.env.STRANGLER_TEST_SUMMARY, `${passed} ${failed} ${skipped}\n`);
    });
  }
}
module.exports = SpecWithSummary;
