// Label selectors as operators write them (`kubectl -l` style): `k=v,k2!=v2,k3`. Every term must
// hold. A machine without an assignment has no labels: it matches only `!=` terms.
import { InvalidArgumentError } from '../../../lib/errors.js';

export type LabelTerm =
  | { readonly op: 'equals'; readonly key: string; readonly value: string }
  | { readonly op: 'not-equals'; readonly key: string; readonly value: string }
  | { readonly op: 'exists'; readonly key: string };

const KEY = '[A-Za-z0-9][A-Za-z0-9._/-]*';
const VALUE = '[A-Za-z0-9._-]*';
const TERM = new RegExp(`^(${KEY})\\s*(?:(!=|==|=)\\s*(${VALUE}))?$`);

/** Parses `k=v,k2!=v2,k3`; a malformed term is INVALID_ARGUMENT naming `field` and the term. */
export function parseLabelSelector(selector: string, field = 'label_selector'): LabelTerm[] {
  const terms: LabelTerm[] = [];
  for (const part of selector.split(',').map((p) => p.trim()).filter(Boolean)) {
    const m = TERM.exec(part);
    if (!m) throw new InvalidArgumentError({ field, description: `"${part}" is not key=value, key!=value or key` });
    const [, key = '', op, value = ''] = m;
    if (op === undefined) terms.push({ op: 'exists', key });
    else terms.push({ op: op === '!=' ? 'not-equals' : 'equals', key, value });
  }
  return terms;
}

/** Whether `labels` (undefined: the machine has no assignment) satisfy every term. */
export function matchesLabelSelector(terms: readonly LabelTerm[], labels: Readonly<Record<string, string>> | undefined): boolean {
  return terms.every((t) => {
    const value = labels && Object.hasOwn(labels, t.key) ? labels[t.key] : undefined;
    switch (t.op) {
      case 'equals':
        return value === t.value;
      case 'not-equals':
        return value !== t.value;
      case 'exists':
        return value !== undefined;
    }
  });
}

/** The canonical text of `terms`: equal selectors give equal strings (used to pin page tokens). */
export function formatLabelSelector(terms: readonly LabelTerm[]): string {
  return terms
    .map((t) => (t.op === 'exists' ? t.key : `${t.key}${t.op === 'equals' ? '=' : '!='}${t.value}`))
    .sort()
    .join(',');
}
