// Package storeopen opens the store a database URL names. It is apart from package store because the backends
// import store, and the dispatcher imports the backends.
//
// It may import internal/store and its backends. It must never decide which data directory to open: internal/node
// does.
package storeopen
