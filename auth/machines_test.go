package auth

import (
	"crypto/sha256"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestNewMachines(t *testing.T) {
	ms := mustMachines(t, testConfigs())
	if got, want := ms.Names(), []string{ciName, tfName}; !slices.Equal(got, want) {
		t.Errorf("Names() = %v, want %v", got, want)
	}
	if !ms.Has(ciName) || ms.Has("nobody") {
		t.Error("Has disagrees with the config")
	}
	tests := []struct {
		name        string
		clientID    string
		machine     string
		ttl, maxTTL time.Duration
	}{
		{"configured TTLs", ciID, ciName, 10 * time.Minute, 30 * time.Minute},
		{"default TTLs (DESIGN §15)", tfID, tfName, 2 * time.Hour, 24 * time.Hour},
		{"client id in upper case", strings.ToUpper(ciID), ciName, 10 * time.Minute, 30 * time.Minute},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := ms.lookupClient(tc.clientID)
			if m == nil {
				t.Fatalf("lookupClient(%q) = nil", tc.clientID)
			}
			if m.name != tc.machine || m.ttl != tc.ttl || m.maxTTL != tc.maxTTL {
				t.Errorf("got %s ttl %v max %v, want %s ttl %v max %v", m.name, m.ttl, m.maxTTL, tc.machine, tc.ttl, tc.maxTTL)
			}
		})
	}
	if ms.lookupClient("6f1c5b1e-0000-4000-8000-000000000002") != nil || ms.lookupClient("terraform") != nil {
		t.Error("lookupClient found an unconfigured client id")
	}
	if _, err := NewMachines(nil); err != nil {
		t.Errorf("NewMachines(nil) = %v, want an empty set", err)
	}
	// The decoy costs what the configured hashes cost.
	if got, want := ms.decoy.params(), (params{19456, 2, 1}); got != want {
		t.Errorf("decoy parameters %+v, want %+v", got, want)
	}
}

func TestNewMachinesDecoyFollowsConfiguredParameters(t *testing.T) {
	const m64 = "$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc"
	ms := mustMachines(t, []MachineConfig{
		{Name: "a", ClientID: ciID, ClientSecretHash: m64},
		{Name: "b", ClientID: tfID, ClientSecretHash: strings.Replace(m64, "c29tZXNhbHQ", "ZGlmZnNhbHQ", 1)},
		{Name: "c", ClientID: "6f1c5b1e-0000-4000-8000-000000000003", ClientSecretHash: ciHash},
	})
	if got, want := ms.decoy.params(), (params{65536, 2, 1}); got != want {
		t.Errorf("decoy parameters %+v, want the majority's %+v", got, want)
	}
}

// TestNewMachinesReportsEveryProblem feeds one config with every kind of
// problem and wants each reported, in one error, without any hash in it.
func TestNewMachinesReportsEveryProblem(t *testing.T) {
	const weak = "$argon2id$v=19$m=256,t=2,p=1$c29tZXNhbHQ$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4"
	cfgs := []MachineConfig{
		{Name: ciName, ClientID: ciID, ClientSecretHash: ciHash, StaticTokens: []string{tfStaticHash}},
		{Name: ciName, ClientID: strings.ToUpper(ciID), ClientSecretHash: "$2a$10$notargon"}, // 1: name, id, hash
		{Name: "Bad Name", ClientID: "not-a-uuid", ClientSecretHash: weak},                   // 2
		{Name: "", ClientID: "", ClientSecretHash: ""},                                       // 3
		{Name: "ttl", ClientID: "6f1c5b1e-0000-4000-8000-000000000004", ClientSecretHash: tfHash, // 4
			AccessTokenTTL: "2 fortnights", AccessTokenMaxTTL: "-1h"},
		{Name: "short", ClientID: "6f1c5b1e-0000-4000-8000-000000000005", ClientSecretHash: tfHash, // 5
			AccessTokenTTL: "30s"},
		{Name: "inverted", ClientID: "6f1c5b1e-0000-4000-8000-000000000006", ClientSecretHash: tfHash, // 6
			AccessTokenTTL: "3h", AccessTokenMaxTTL: "1h"},
		{Name: "fraction", ClientID: "6f1c5b1e-0000-4000-8000-000000000007", ClientSecretHash: tfHash, // 7
			AccessTokenTTL: "90.5s"},
		{Name: "statics", ClientID: "6f1c5b1e-0000-4000-8000-000000000008", ClientSecretHash: tfHash, // 8
			StaticTokens: []string{"abc", tfStaticHash, unlistedStaticHash, strings.ToUpper(unlistedStaticHash), unlistedStaticHash[:63] + "g"}},
		{Name: "maxonly", ClientID: "6f1c5b1e-0000-4000-8000-000000000009", ClientSecretHash: tfHash, // 9
			AccessTokenMaxTTL: "1h"},
	}
	_, err := NewMachines(cfgs)
	if err == nil {
		t.Fatal("NewMachines succeeded, want every problem reported")
	}
	msg := err.Error()
	want := []string{
		`machineIdentities[1] (ci-agent): duplicate name "ci-agent"`,
		`machineIdentities[1] (ci-agent): clientId 3c90c3cc-0d44-4b50-8888-8dd25736052a is also the clientId of "ci-agent"`,
		`machineIdentities[1] (ci-agent): clientSecretHash: not an argon2id PHC string`,
		`machineIdentities[2] (Bad Name): invalid machine identity name "Bad Name"`,
		`machineIdentities[2] (Bad Name): clientId "not-a-uuid" is not a UUID`,
		`machineIdentities[2] (Bad Name): clientSecretHash: m=256,t=2 is weaker than OWASP's minimum`,
		`machineIdentities[3]: name is required`,
		`machineIdentities[3]: clientId is required`,
		`machineIdentities[3]: clientSecretHash is required`,
		`machineIdentities[4] (ttl): accessTokenTTL: invalid duration: "2 fortnights"`,
		`machineIdentities[4] (ttl): accessTokenMaxTTL: invalid duration: "-1h" must be positive`,
		`machineIdentities[5] (short): accessTokenTTL "30s" is under 1m0s`,
		`machineIdentities[6] (inverted): accessTokenMaxTTL (1h0m0s) is shorter than accessTokenTTL (3h0m0s)`,
		`machineIdentities[7] (fraction): accessTokenTTL "90.5s" is not a whole number of seconds`,
		`machineIdentities[9] (maxonly): accessTokenMaxTTL (1h0m0s) is shorter than the default accessTokenTTL (2h0m0s)`,
		`machineIdentities[8] (statics): staticTokens[0] is not a SHA-256 in hex`,
		`machineIdentities[8] (statics): staticTokens[1] is also a static token of "ci-agent"`,
		`machineIdentities[8] (statics): staticTokens[3] is listed twice`,
		`machineIdentities[8] (statics): staticTokens[4] is not a SHA-256 in hex`,
	}
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("error lacks %q", w)
		}
	}
	if n := strings.Count(msg, "\n") + 1; n != len(want) {
		t.Errorf("error has %d lines, want %d:\n%s", n, len(want), msg)
	}
	for _, secretish := range []string{ciHash, weak, tfStaticHash, unlistedStaticHash, "$2a$10$notargon", "s7F1u3Tab0ES0XZJ", "nf65EOgLrQMR"} {
		if strings.Contains(msg, secretish) {
			t.Errorf("error repeats a hash: %q", secretish)
		}
	}
}

func TestStaticMachine(t *testing.T) {
	ms := mustMachines(t, []MachineConfig{
		{Name: ciName, ClientID: ciID, ClientSecretHash: ciHash, StaticTokens: []string{strings.ToUpper(unlistedStaticHash)}},
		{Name: tfName, ClientID: tfID, ClientSecretHash: tfHash, StaticTokens: []string{tfStaticHash}},
	})
	tests := []struct {
		name, token, machine string
		ok                   bool
	}{
		{"second machine's token", tfStatic, tfName, true},
		{"first machine's token, hash configured in upper case", unlistedStatic, ciName, true},
		{"unknown token", "pkid_st_nope", "", false},
		{"empty", "", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := ms.staticMachine(sha256.Sum256([]byte(tc.token)))
			if got != tc.machine || ok != tc.ok {
				t.Errorf("staticMachine = %q, %v; want %q, %v", got, ok, tc.machine, tc.ok)
			}
		})
	}
}
