package config_test

import "github.com/traefik/paerser/cli"

var cliExecute = cli.Execute
