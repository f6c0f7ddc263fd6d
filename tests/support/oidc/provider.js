// A real OpenID Connect provider (the npm package oidc-provider) for the sign-in tests.
//
// One confidential client, the accounts the test names (login -> claims), the
// package's development login and consent forms (any login of ACCOUNTS signs in,
// no password). Started by tests/web/test_oidc.py:
//   OIDC_PORT=... OIDC_CLIENT_ID=... OIDC_CLIENT_SECRET=... OIDC_REDIRECT_URI=...
//   OIDC_ACCOUNTS_FILE=accounts.json node provider.js
// where accounts.json is {"alice": {"groups": ["notifier-ops"], "name": "..."}}, read
// again at each sign-in (a test changes someone's groups between two sign-ins).
// It prints "ready <issuer>" once it listens on 127.0.0.1.
import { readFileSync } from 'node:fs';

import Provider from 'oidc-provider';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};

const port = Number(env('OIDC_PORT'));
const issuer = `http://127.0.0.1:${port}`;
const accountsFile = env('OIDC_ACCOUNTS_FILE');

const provider = new Provider(issuer, {
  clients: [{
    client_id: env('OIDC_CLIENT_ID'),
    client_secret: env('OIDC_CLIENT_SECRET'),
    redirect_uris: [env('OIDC_REDIRECT_URI')],
    grant_types: ['authorization_code'],
    response_types: ['code'],
  }],
  claims: {
    openid: ['sub'],
    profile: ['preferred_username', 'name'],
    groups: ['groups'],
  },
  scopes: ['openid', 'profile', 'groups'],
  // Stable keys are not needed: each test run starts a new provider.
  async findAccount(ctx, id) {
    const account = JSON.parse(readFileSync(accountsFile, 'utf8'))[id];
    if (!account) return undefined;
    return {
      accountId: id,
      async claims() {
        return { sub: account.sub ?? id, preferred_username: id, name: account.name ?? id,
                 groups: account.groups ?? [] };
      },
    };
  },
  features: { devInteractions: { enabled: true } },
});
provider.proxy = false;

provider.listen(port, '127.0.0.1', () => {
  console.log(`ready ${issuer}`);
});
