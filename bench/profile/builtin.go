package profile

import (
	"embed"
	"fmt"
	"sort"
	"strings"
)

// The built-in profiles. configs/profiles/ holds identical copies for people to read and
// edit (a test keeps them in step).
//
//go:embed builtin/*.yaml
var builtinFS embed.FS

// BuiltinNames lists the built-in profiles.
func BuiltinNames() []string {
	ents, _ := builtinFS.ReadDir("builtin")
	var names []string
	for _, e := range ents {
		names = append(names, strings.TrimSuffix(e.Name(), ".yaml"))
	}
	sort.Strings(names)
	return names
}

// BuiltinSource returns the YAML text of a built-in profile.
func BuiltinSource(name string) ([]byte, error) {
	data, err := builtinFS.ReadFile("builtin/" + name + ".yaml")
	if err != nil {
		return nil, fmt.Errorf("no built-in profile %q (built-in: %s)", name, strings.Join(BuiltinNames(), ", "))
	}
	return data, nil
}

// Builtin returns a built-in profile, e.g. "seed-night".
func Builtin(name string) (*Profile, error) {
	data, err := BuiltinSource(name)
	if err != nil {
		return nil, err
	}
	p, err := Parse(name+".yaml", data)
	if err != nil {
		return nil, err
	}
	if p.Name == "" {
		p.Name = name
	}
	return p, nil
}
