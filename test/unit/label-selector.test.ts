// Label selectors: parsing (with the field named on bad input) and matching, as tables.
import test from 'ava';
import { formatLabelSelector, matchesLabelSelector, parseLabelSelector } from '../../services/deployer/domain/label-selector.js';
import { InvalidArgumentError } from '../../lib/errors.js';

const parsed: [string, ReturnType<typeof parseLabelSelector>][] = [
  ['', []],
  ['role=worker', [{ op: 'equals', key: 'role', value: 'worker' }]],
  ['role==worker', [{ op: 'equals', key: 'role', value: 'worker' }]],
  ['ultracloud.io/role!=worker', [{ op: 'not-equals', key: 'ultracloud.io/role', value: 'worker' }]],
  ['gpu', [{ op: 'exists', key: 'gpu' }]],
  ['rack=', [{ op: 'equals', key: 'rack', value: '' }]],
  [' a=1 , b != 2 ,c ', [{ op: 'equals', key: 'a', value: '1' }, { op: 'not-equals', key: 'b', value: '2' }, { op: 'exists', key: 'c' }]],
];
for (const [selector, terms] of parsed) {
  test(`parses "${selector}"`, (t) => {
    t.deepEqual(parseLabelSelector(selector), terms);
  });
}

for (const bad of ['=x', 'a=b=c', 'a in (x)', '!a', 'a=b c', 'a=b,=']) {
  test(`refuses "${bad}" naming the field and the term`, (t) => {
    const error = t.throws(() => parseLabelSelector(bad, 'label_selector'), { instanceOf: InvalidArgumentError });
    t.regex(error?.message ?? '', /^label_selector: "/);
  });
}

const labels = { 'ultracloud.io/role': 'worker', rack: 'r2' };
const matches: [string, Record<string, string> | undefined, boolean][] = [
  ['ultracloud.io/role=worker', labels, true],
  ['ultracloud.io/role=worker,rack=r2', labels, true],
  ['ultracloud.io/role=worker,rack=r3', labels, false],
  ['rack!=r3', labels, true],
  ['rack!=r2', labels, false],
  ['gpu!=yes', labels, true],
  ['rack', labels, true],
  ['gpu', labels, false],
  ['', undefined, true],
  ['rack', undefined, false],
  ['rack=r2', undefined, false],
  ['rack!=r2', undefined, true],
  ['constructor', {}, false],
];
for (const [selector, l, expected] of matches) {
  test(`"${selector}" ${expected ? 'matches' : 'does not match'} ${l ? JSON.stringify(l) : 'a machine without labels'}`, (t) => {
    t.is(matchesLabelSelector(parseLabelSelector(selector), l), expected);
  });
}

test('equal selectors format equally whatever their order and spacing', (t) => {
  t.is(formatLabelSelector(parseLabelSelector('b!=2, a=1,c')), formatLabelSelector(parseLabelSelector('c,a==1,b != 2')));
});
