// The CNI verbs and the environment each requires (SPEC.md §3 "Parameters"), in a module of their
// own: the plugin server's client (plugin-server/client.ts) checks them before anything else loads.

export const VERBS = ['ADD', 'DEL', 'CHECK', 'VERSION', 'GC', 'STATUS'] as const;
export type Verb = (typeof VERBS)[number];

export type Env = Readonly<Record<string, string | undefined>>;

const REQUIRED: Readonly<Record<Exclude<Verb, 'VERSION'>, readonly string[]>> = {
  ADD: ['CNI_CONTAINERID', 'CNI_NETNS', 'CNI_IFNAME', 'CNI_PATH'],
  CHECK: ['CNI_CONTAINERID', 'CNI_NETNS', 'CNI_IFNAME', 'CNI_PATH'],
  DEL: ['CNI_CONTAINERID', 'CNI_IFNAME', 'CNI_PATH'], // no netns: DEL must still release IPAM
  GC: ['CNI_PATH'],
  STATUS: ['CNI_PATH'],
};

/** The variables `verb` requires that `env` lacks or has empty, in the spec's order ([] when none). */
export function missingEnv(verb: Exclude<Verb, 'VERSION'>, env: Env): string[] {
  return REQUIRED[verb].filter((k) => env[k] === undefined || env[k] === '');
}
