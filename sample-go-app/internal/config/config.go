// Package config reads the service's TOML configuration and renders it as YAML.
package config

import (
	"fmt"
	"os"

	"github.com/BurntSushi/toml"
	"gopkg.in/yaml.v3"
)

// Config is the service configuration.
type Config struct {
	Listen   string `toml:"listen" yaml:"listen"`
	Service  string `toml:"service" yaml:"service"`
	Greeting string `toml:"greeting" yaml:"greeting"`
	MaxItems int    `toml:"max_items" yaml:"max_items"`
}

const defaults = `
listen = ":8080"
service = "sample"
greeting = "hello from layerbench"
max_items = 100
`

// Load reads the defaults, then the file at path when path is not empty.
func Load(path string) (Config, error) {
	var cfg Config
	if _, err := toml.Decode(defaults, &cfg); err != nil {
		return cfg, fmt.Errorf("built-in defaults: %w", err)
	}
	if path == "" {
		return cfg, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return cfg, err
	}
	if _, err := toml.Decode(string(data), &cfg); err != nil {
		return cfg, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, nil
}

// YAML renders the configuration as YAML.
func (c Config) YAML() ([]byte, error) {
	return yaml.Marshal(c)
}

// ParseYAML reads a configuration rendered by YAML.
func ParseYAML(data []byte) (Config, error) {
	var c Config
	err := yaml.Unmarshal(data, &c)
	return c, err
}
