// Package auth authenticates machine identities (DESIGN §15): the Bearer
// credentials that Infisical's own clients — the CLI's cert-manager agent,
// the Terraform provider, cert-manager's Infisical issuer — present instead
// of a TLS client certificate.
//
// It owns:
//
//   - the machineIdentities[] config (MachineConfig) and its validated form
//     (Machines, built by NewMachines, which reports every problem at once);
//   - client secrets and their argon2id hashes (NewClientCredentials,
//     HashSecret), and static tokens with their SHA-256 (NewStaticToken),
//     for `pkid identity add` and `pkid identity token`;
//   - access tokens: HS256 JWTs signed with a key every node shares
//     (Signer), so any node verifies any node's tokens;
//   - universal-auth login, token renewal and revocation, and the check of
//     a Bearer credential on every request (Service);
//   - the login rate limits and the bound on concurrent argon2
//     verifications (LoginLimiter), which outlive reloads.
//
// # Access tokens
//
// A token carries sub (the machine name), iss and aud ("pkid"), iat, exp, a
// random jti, auth_time (the login), pkid_max_exp (login + max TTL: no
// renewal goes past it) and pkid_cred (a digest of the client id and secret
// hash the login used). Renewal keeps the jti, auth_time and deadline and
// moves exp, so one login is one lineage: revoking any of its tokens
// revokes all of them, and the store can forget the revocation after the
// deadline. A token stops working when its machine is removed from the
// config or its client id or secret hash changes there, at the next reload.
//
// # What never leaks
//
// No error message contains a secret, a token, or a hash, and a failed login
// says the same thing, after the same work, whether the client id is unknown
// or the secret is wrong. Why a token was refused is in TokenError.Reason,
// for the log; the client sees ErrInvalidToken's message only.
//
// auth imports no pkid package but policy (machine names and the duration
// grammar), per DESIGN §9; the store satisfies its Revocations interface.
package auth
