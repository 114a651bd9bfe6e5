package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/floodgate/floodgate/gateway/config"
)

// FuzzConfigDecode: arbitrary bytes as a configuration file, and as the value of one
// override on top of a valid file. Properties: nothing panics or hangs (alias bombs are
// refused before expansion); every error names a place; a configuration that loads
// loads again the same way (decoding is deterministic). Seeds: the golden files and the
// YAML attack corpus.
func FuzzConfigDecode(f *testing.F) {
	for _, pattern := range []string{"testdata/validate/*.txt", "../../testdata/attacks/yaml/*.yaml"} {
		files, _ := filepath.Glob(pattern)
		for _, file := range files {
			b, _ := os.ReadFile(file)
			in, _, _ := strings.Cut(string(b), "\n----------\n")
			f.Add([]byte(in), "routes/lottery/enabled", "false")
		}
	}
	f.Add([]byte(layersBase), "routes/lottery/acl/allow_methods", "yes")
	f.Add([]byte(layersBase), "pools/q/max_conns", "-1")
	f.Fuzz(func(t *testing.T, file []byte, path, value string) {
		doc, err := config.Parse("f.yaml", file)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("an error without a message")
			}
			return
		}
		ov := []config.Override{{Path: path, Value: value, Origin: "consul:f/" + path}}
		c1, err1 := config.Load(doc, ov)
		c2, err2 := config.Load(doc, ov)
		if (err1 == nil) != (err2 == nil) {
			t.Fatalf("loading twice: %v then %v", err1, err2)
		}
		if err1 != nil {
			var errs config.Errors
			if e, ok := err1.(config.Errors); ok {
				errs = e
			}
			for _, e := range errs {
				if e.Where == "" {
					t.Fatalf("an error without a place: %v", e)
				}
			}
			return
		}
		if len(c1.Routes) != len(c2.Routes) || len(c1.Pools) != len(c2.Pools) {
			t.Fatalf("loading twice gave different configurations")
		}
	})
}
