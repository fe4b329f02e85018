// Package server is the HTTP API: routes, metrics, logging, and the self-test that exercises them.
package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"example.com/layerbench/sample/internal/config"
)

// Item is what /api/items/{id} returns.
type Item struct {
	ID        string `json:"id"`
	RequestID string `json:"request_id"`
	Greeting  string `json:"greeting"`
	Service   string `json:"service"`
}

// New builds the router with its own metrics registry.
func New(cfg config.Config, log *zap.Logger) http.Handler {
	registry := prometheus.NewRegistry()
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "http_requests_total",
		Help: "HTTP requests served, by route and status.",
	}, []string{"route", "status"})
	registry.MustRegister(requests, prometheus.NewGoCollector())

	r := chi.NewRouter()
	count := func(route string, status int) {
		requests.WithLabelValues(route, strconv.Itoa(status)).Inc()
	}
	r.Get("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		count("/healthz", http.StatusOK)
		_, _ = io.WriteString(w, "ok\n")
	})
	r.Get("/api/items/{id}", func(w http.ResponseWriter, req *http.Request) {
		id := chi.URLParam(req, "id")
		n, err := strconv.Atoi(id)
		if err != nil || n < 0 || n >= cfg.MaxItems {
			count("/api/items/{id}", http.StatusNotFound)
			http.Error(w, "no such item", http.StatusNotFound)
			return
		}
		item := Item{ID: id, RequestID: uuid.NewString(), Greeting: cfg.Greeting, Service: cfg.Service}
		log.Info("item served", zap.String("id", id), zap.String("request_id", item.RequestID))
		count("/api/items/{id}", http.StatusOK)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(item)
	})
	r.Get("/config", func(w http.ResponseWriter, _ *http.Request) {
		out, err := cfg.YAML()
		if err != nil {
			count("/config", http.StatusInternalServerError)
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		count("/config", http.StatusOK)
		w.Header().Set("Content-Type", "application/yaml")
		_, _ = w.Write(out)
	})
	r.Handle("/metrics", promhttp.HandlerFor(registry, promhttp.HandlerOpts{}))
	return r
}

// Serve listens on the configured address until the process ends.
func Serve(cfg config.Config) error {
	log, err := zap.NewProduction()
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	log.Info("listening", zap.String("addr", cfg.Listen), zap.Int("uid", os.Getuid()))
	srv := &http.Server{Addr: cfg.Listen, Handler: New(cfg, log), ReadHeaderTimeout: 5 * time.Second}
	return srv.ListenAndServe()
}

// SelfTest starts the server on a loopback port, calls every endpoint and
// checks the answers. It needs no network beyond loopback.
func SelfTest(cfg config.Config, out io.Writer) error {
	log := zap.NewNop()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("listen on loopback: %w", err)
	}
	srv := &http.Server{Handler: New(cfg, log), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer func() { _ = srv.Shutdown(context.Background()) }()
	base := "http://" + ln.Addr().String()
	client := &http.Client{Timeout: 5 * time.Second}
	get := func(path string, want int) (string, error) {
		resp, err := client.Get(base + path)
		if err != nil {
			return "", fmt.Errorf("GET %s: %w", path, err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return "", fmt.Errorf("GET %s: %w", path, err)
		}
		if resp.StatusCode != want {
			return "", fmt.Errorf("GET %s: status %d, want %d", path, resp.StatusCode, want)
		}
		fmt.Fprintf(out, "selftest: GET %s -> %d (%d bytes)\n", path, resp.StatusCode, len(body))
		return string(body), nil
	}

	if body, err := get("/healthz", http.StatusOK); err != nil {
		return err
	} else if strings.TrimSpace(body) != "ok" {
		return fmt.Errorf("/healthz answered %q", body)
	}
	body, err := get("/api/items/7", http.StatusOK)
	if err != nil {
		return err
	}
	var item Item
	if err := json.Unmarshal([]byte(body), &item); err != nil {
		return fmt.Errorf("/api/items/7: %w", err)
	}
	if item.ID != "7" || item.Greeting != cfg.Greeting {
		return fmt.Errorf("/api/items/7 answered %+v", item)
	}
	if _, err := uuid.Parse(item.RequestID); err != nil {
		return fmt.Errorf("/api/items/7: request_id %q is not a UUID: %w", item.RequestID, err)
	}
	if _, err := get("/api/items/nope", http.StatusNotFound); err != nil {
		return err
	}
	body, err = get("/config", http.StatusOK)
	if err != nil {
		return err
	}
	parsed, err := config.ParseYAML([]byte(body))
	if err != nil || parsed != cfg {
		return fmt.Errorf("/config round trip: got %+v (%v), want %+v", parsed, err, cfg)
	}
	body, err = get("/metrics", http.StatusOK)
	if err != nil {
		return err
	}
	if !strings.Contains(body, `http_requests_total{route="/api/items/{id}",status="200"} 1`) {
		return fmt.Errorf("/metrics does not count the item request:\n%s", body)
	}
	fmt.Fprintf(out, "selftest: running as uid %d\n", os.Getuid())
	probeWrites(out)
	return nil
}

// probeWrites reports whether the process can modify its own binary and
// create a file under /etc. It only reports: either answer passes.
func probeWrites(out io.Writer) {
	report := func(what string, err error) {
		if err != nil {
			fmt.Fprintf(out, "selftest: write-%s denied (%v)\n", what, err)
		} else {
			fmt.Fprintf(out, "selftest: write-%s allowed\n", what)
		}
	}
	// A running binary cannot be opened for writing by anyone (ETXTBSY), so
	// ask the kernel whether this user may write it (access(2), W_OK).
	exe, err := os.Executable()
	if err == nil {
		err = syscall.Access(exe, 2)
	}
	report("binary", err)
	const probe = "/etc/layerbench-write-probe"
	err = os.WriteFile(probe, []byte("probe\n"), 0o644)
	if err == nil {
		_ = os.Remove(probe)
	}
	report("etc", err)
}
