package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/pkid/pkid/api"
)

// shutdownGrace bounds how long in-flight requests may take to finish.
const shutdownGrace = 30 * time.Second

// Serve loads the config, builds and checks every component, and serves the
// API until ctx is cancelled; then it stops accepting, drains in-flight
// requests, and closes the store before the token.
func Serve(ctx context.Context, configPath string, log *slog.Logger) error {
	cfg, err := LoadConfig(configPath)
	if err != nil {
		return err
	}
	comps, err := Build(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer func() {
		if err := comps.Close(); err != nil {
			log.Error("closing", "error", err)
		}
	}()
	if n, err := comps.Store.CountPending(ctx); err != nil {
		return fmt.Errorf("counting pending records: %w", err)
	} else if n > 0 {
		log.Warn("pending records left by an earlier run: their certificates may or may not have been signed", "count", n)
	}

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", cfg.Listen, err)
	}
	srv := &http.Server{
		Handler:           api.NewHandler(api.Config{Issuer: comps.Issuer, Logger: log}),
		TLSConfig:         comps.TLS,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      2 * time.Minute,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	served := make(chan error, 1)
	go func() { served <- srv.ServeTLS(ln, "", "") }()
	log.Info("serving", "listen", ln.Addr().String(), "profiles", len(cfg.Profiles), "cas", len(comps.CAs))

	select {
	case err := <-served:
		return fmt.Errorf("API listener stopped: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down: draining in-flight requests")
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("draining: %w", err)
	}
	if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	log.Info("stopped")
	return nil
}

// CheckConfig loads and builds everything Serve would, without listening.
func CheckConfig(ctx context.Context, configPath string, log *slog.Logger) (*ConfigFile, error) {
	cfg, err := LoadConfig(configPath)
	if err != nil {
		return nil, err
	}
	comps, err := Build(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	return cfg, comps.Close()
}
