// Package node is Keyward's composition root: it opens one data directory (the configuration and profiles, the
// store, the keystores), wires the CA custodian (internal/ca) and the registration authority (internal/ra) over
// them, starts the change feed for long-running processes (Follow), and owns the files of the data directory
// (the admin token file, the server's TLS files, site packages). Commands, benchmarks and cmd open a Node;
// nothing else reads the data directory.
//
// It may import every internal package below the faces (ra, ca, feed, store and its backends, keystore and its
// backends, hierarchy, profile, audit). Only internal/cli, internal/bench and cmd import it. It must never make
// a decision of its own: every change it asks for goes through the RA.
package node
