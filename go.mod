module github.com/traefik-sd/traefik-sd

go 1.26.8

require github.com/traefik/yaegi v0.16.1
