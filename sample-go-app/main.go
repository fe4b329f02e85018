// Command sample is the service layerbench builds: a small HTTP API with a
// router, Prometheus metrics, structured logging, UUIDs and a TOML config.
//
//	sample [serve]      serve on the configured address
//	sample selftest     start the server on loopback, call its endpoints, exit 0 when all answer correctly
package main

import (
	"fmt"
	"os"

	"example.com/layerbench/sample/internal/config"
	"example.com/layerbench/sample/internal/server"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	mode := "serve"
	if len(os.Args) > 1 {
		mode = os.Args[1]
	}
	cfg, err := config.Load(os.Getenv("SAMPLE_CONFIG"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "config:", err)
		os.Exit(2)
	}
	switch mode {
	case "serve":
		if err := server.Serve(cfg); err != nil {
			fmt.Fprintln(os.Stderr, "serve:", err)
			os.Exit(1)
		}
	case "selftest":
		fmt.Fprintln(os.Stdout, "selftest: version", version)
		if err := server.SelfTest(cfg, os.Stdout); err != nil {
			fmt.Fprintln(os.Stdout, "selftest: FAILED:", err)
			os.Exit(1)
		}
		fmt.Fprintln(os.Stdout, "selftest: ok")
	default:
		fmt.Fprintf(os.Stderr, "unknown mode %q (want serve or selftest)\n", mode)
		os.Exit(2)
	}
}
