module github.com/traefik-sd/traefik-sd/plugin/interpreted

go 1.26.8

// The plugin's tests under Yaegi, and its Yaegi benchmarks, live in a module
// of their own: Traefik's plugin catalog refuses a plugin module whose go.mod
// requires Yaegi or Traefik, and these need Yaegi. They read the plugin's
// source from the directory above, as Traefik's plugins-local does.
replace github.com/traefik-sd/traefik-sd => ../..

require (
	github.com/mitchellh/mapstructure v1.5.1-0.20231216201459-8508981c8b6c
	github.com/traefik-sd/traefik-sd v0.0.0-00010101000000-000000000000
	github.com/traefik/yaegi v0.16.1
	gopkg.in/yaml.v3 v3.0.1
)

require github.com/traefik/paerser v0.2.2 // indirect
