// The chart test's oracle: renders deploy/chart/kubetap as Helm does —
// Go's text/template with the values merged over values.yaml and the few
// Sprig functions the chart uses — so the CLI's own renderer (gtmpl) can be
// compared with Go's engine. Helm itself cannot be built here.
//
// Usage: go run render.go CHART_DIR DEFAULTS.json OVERRIDES.json NAMESPACE
// (values.yaml as JSON, since the standard library has no YAML).
package main

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"text/template"
)

func merge(base, over map[string]interface{}) {
	for k, v := range over {
		if v == nil {
			delete(base, k)
			continue
		}
		bm, bok := base[k].(map[string]interface{})
		om, ook := v.(map[string]interface{})
		if bok && ook {
			merge(bm, om)
		} else {
			base[k] = v
		}
	}
}

func empty(v interface{}) bool {
	switch x := v.(type) {
	case nil:
		return true
	case bool:
		return !x
	case string:
		return x == ""
	case float64:
		return x == 0
	case []interface{}:
		return len(x) == 0
	case map[string]interface{}:
		return len(x) == 0
	}
	return false
}

func text(v interface{}) string {
	if v == nil {
		return ""
	}
	if s, ok := v.(string); ok {
		return s
	}
	return fmt.Sprint(v)
}

func load(path string) map[string]interface{} {
	data, err := os.ReadFile(path)
	if err != nil {
		fail(err)
	}
	var m map[string]interface{}
	if err := json.Unmarshal(data, &m); err != nil {
		fail(err)
	}
	return m
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "render:", err)
	os.Exit(1)
}

func main() {
	if len(os.Args) != 5 {
		fail(errors.New("usage: render CHART_DIR DEFAULTS.json OVERRIDES.json NAMESPACE"))
	}
	chart, namespace := os.Args[1], os.Args[4]
	values := load(os.Args[2])
	merge(values, load(os.Args[3]))
	appVersion := ""
	chartYaml, err := os.ReadFile(filepath.Join(chart, "Chart.yaml"))
	if err != nil {
		fail(err)
	}
	for _, line := range strings.Split(string(chartYaml), "\n") {
		if strings.HasPrefix(line, "appVersion:") {
			v := strings.TrimSpace(strings.TrimPrefix(line, "appVersion:"))
			if u, err := strconv.Unquote(v); err == nil {
				v = u
			}
			appVersion = v
		}
	}
	context := map[string]interface{}{
		"Values":  values,
		"Release": map[string]interface{}{"Name": "kubetap", "Namespace": namespace, "Service": "Helm"},
		"Chart":   map[string]interface{}{"Name": "kubetap", "Version": appVersion, "AppVersion": appVersion},
	}
	funcs := template.FuncMap{
		"default": func(d, v interface{}) interface{} {
			if empty(v) {
				return d
			}
			return v
		},
		"required": func(msg string, v interface{}) (interface{}, error) {
			if empty(v) {
				return nil, errors.New(msg)
			}
			return v, nil
		},
		"quote":  func(v interface{}) string { return strconv.Quote(text(v)) },
		"b64enc": func(v interface{}) string { return base64.StdEncoding.EncodeToString([]byte(text(v))) },
	}
	files, err := filepath.Glob(filepath.Join(chart, "templates", "*.yaml"))
	if err != nil {
		fail(err)
	}
	sort.Strings(files)
	for _, file := range files {
		t, err := template.New(filepath.Base(file)).Funcs(funcs).Option("missingkey=zero").ParseFiles(file)
		if err != nil {
			fail(err)
		}
		fmt.Printf("---\n# Source: %s\n", filepath.Base(file))
		if err := t.Execute(os.Stdout, context); err != nil {
			fail(err)
		}
		fmt.Println()
	}
}
