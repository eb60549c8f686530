// Command testsummary reads 'go test -json' on standard input and prints what a CI log needs: the full output of
// every failed test, every skipped test with its reason, package results, and a closing line
// "tests: N passed, N failed, N skipped". With -fail-on-skip it exits 1 if any test skipped. It may import only
// the standard library.
package main
