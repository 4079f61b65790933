package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"strings"

	yaml "go.yaml.in/yaml/v3"
)

// Limits that keep a hostile job/config.yaml from exhausting memory or CPU.
const (
	// MaxConfigBytes is the largest job/config.yaml Parse accepts.
	MaxConfigBytes = 1 << 20
	// MaxTasks is the largest total number of tasks over all actions.
	MaxTasks = 1000
	// maxNodes bounds YAML nodes visited, counting every alias expansion again,
	// so "billion laughs" documents fail fast instead of being expanded.
	maxNodes = 200_000
	// maxDepth bounds nesting; the model is at most ~8 levels deep.
	maxDepth = 64
)

// Parse strictly decodes a job/config.yaml and validates it. Unknown fields,
// wrong types, duplicate keys and every validation problem are reported with the
// line they occur on.
func Parse(data []byte) (*Config, error) {
	cfg, _, err := ParseWithLines(data)
	return cfg, err
}

// Lines maps model paths ("actions[0].tasks[1].env[0]", see TaskPath) to the line they
// start on.
type Lines map[string]int

// Line is the line of path, or of its nearest enclosing element that was in the YAML; 0
// when there is none.
func (l Lines) Line(path string) int {
	for p := path; p != ""; p = parentPath(p) {
		if n, ok := l[p]; ok {
			return n
		}
	}
	return 0
}

// TaskPath is the path of task t of action a in Lines.
func TaskPath(a, t int) string { return fmt.Sprintf("actions[%d].tasks[%d]", a, t) }

// ParseWithLines is Parse that also tells where each element of a valid config is, so that
// a later check (lint's policy checks) can name the line as Parse does.
func ParseWithLines(data []byte) (cfg *Config, lines Lines, err error) {
	if len(data) > MaxConfigBytes {
		return nil, nil, fmt.Errorf("config is %d bytes, larger than the limit of %d bytes", len(data), MaxConfigBytes)
	}
	// The YAML library has panicked on malformed input in the past; an invalid
	// config must never take the service down.
	defer func() {
		if r := recover(); r != nil {
			cfg, lines, err = nil, nil, fmt.Errorf("cannot parse config: %v", r)
		}
	}()

	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil, errors.New("config is empty")
		}
		return nil, nil, fmt.Errorf("cannot parse config: %w", err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		if err != nil {
			return nil, nil, fmt.Errorf("cannot parse config: %w", err)
		}
		return nil, nil, fmt.Errorf("line %d: config must be a single YAML document", extra.Line)
	}
	root := &doc
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) == 0 {
			return nil, nil, errors.New("config is empty")
		}
		root = root.Content[0]
	}
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return nil, nil, errors.New("config is empty")
	}

	d := &decoder{budget: maxNodes, lines: Lines{}}
	cfg = &Config{}
	if err := d.decode(root, reflect.ValueOf(cfg).Elem(), "", 0); err != nil {
		return nil, nil, err
	}
	if err := cfg.validate(d.lines); err != nil {
		return nil, nil, err
	}
	return cfg, d.lines, nil
}

// decoder maps a yaml.Node tree onto the model with reflection, so that every
// error can name its line (the JSON round trip of sigs.k8s.io/yaml loses lines).
type decoder struct {
	budget int
	// lines maps a model path to its line, for validation messages.
	lines Lines
}

var (
	quantityType    = reflect.TypeFor[Quantity]()
	annotationsType = reflect.TypeFor[Annotations]()
)

// typeNames name model types in "unknown field ... in <name>" errors.
var typeNames = map[reflect.Type]string{
	reflect.TypeFor[Config]():          "config",
	reflect.TypeFor[Action]():          "action",
	reflect.TypeFor[Event]():           "event",
	reflect.TypeFor[JSONPath]():        "jsonpath",
	reflect.TypeFor[Task]():            "task",
	reflect.TypeFor[Env]():             "env",
	reflect.TypeFor[Resources]():       "resources",
	reflect.TypeFor[ResourceList]():    "resource list",
	reflect.TypeFor[SecurityContext](): "securityContext",
	reflect.TypeFor[Capabilities]():    "capabilities",
	reflect.TypeFor[Toleration]():      "toleration",
}

func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string, depth int) error {
	d.budget--
	if d.budget < 0 {
		return fmt.Errorf("line %d: config is too large or too deeply aliased (more than %d nodes after alias expansion)", n.Line, maxNodes)
	}
	if depth > maxDepth {
		return fmt.Errorf("line %d: config is nested too deeply", n.Line)
	}
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil {
			return fmt.Errorf("line %d: unknown alias", n.Line)
		}
		return d.decode(n.Alias, v, path, depth+1)
	}
	if path != "" {
		if _, ok := d.lines[path]; !ok {
			d.lines[path] = n.Line
		}
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil // absent value: keep the zero value (nil pointer/slice)
	}
	label := path
	if label == "" {
		label = "config"
	}

	switch v.Type() {
	case quantityType:
		if n.Kind != yaml.ScalarNode || (n.Tag != "!!str" && n.Tag != "!!int" && n.Tag != "!!float") {
			return fmt.Errorf("line %d: %s: expected a quantity like 1, 0.5 or \"512Mi\", got %s", n.Line, label, describe(n))
		}
		v.SetString(n.Value)
		return nil
	case annotationsType:
		return d.decodeAnnotations(n, v, label, depth)
	}

	switch v.Kind() {
	case reflect.Pointer:
		nv := reflect.New(v.Type().Elem())
		if err := d.decode(n, nv.Elem(), path, depth); err != nil {
			return err
		}
		v.Set(nv)
		return nil
	case reflect.Struct:
		return d.decodeStruct(n, v, path, depth)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return fmt.Errorf("line %d: %s: expected a list, got %s", n.Line, label, describe(n))
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, c := range n.Content {
			if err := d.decode(c, s.Index(i), fmt.Sprintf("%s[%d]", path, i), depth+1); err != nil {
				return err
			}
		}
		v.Set(s)
		return nil
	case reflect.Map:
		if v.Type().Key().Kind() != reflect.String || v.Type().Elem().Kind() != reflect.String {
			break
		}
		if n.Kind != yaml.MappingNode {
			return fmt.Errorf("line %d: %s: expected key: value pairs, got %s", n.Line, label, describe(n))
		}
		out := map[string]string{}
		if err := d.stringPairs(n, out, label); err != nil {
			return err
		}
		v.Set(reflect.ValueOf(out).Convert(v.Type()))
		return nil
	case reflect.String:
		// Like the original (yaml.v2), any scalar is accepted as a string: "match: 200".
		if n.Kind != yaml.ScalarNode || n.Tag == "!!binary" {
			return fmt.Errorf("line %d: %s: expected a string, got %s", n.Line, label, describe(n))
		}
		v.SetString(n.Value)
		return nil
	case reflect.Bool:
		var b bool
		if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" || n.Decode(&b) != nil {
			return fmt.Errorf("line %d: %s: expected true or false, got %s", n.Line, label, describe(n))
		}
		v.SetBool(b)
		return nil
	case reflect.Int, reflect.Int32, reflect.Int64:
		var i int64
		if n.Kind != yaml.ScalarNode || !isIntLiteral(n) {
			return fmt.Errorf("line %d: %s: expected an integer, got %s", n.Line, label, describe(n))
		}
		if n.Decode(&i) != nil || v.OverflowInt(i) {
			// Too large for the Go type: report the field's documented range.
			field := path[strings.LastIndexAny(path, ".")+1:]
			if b, ok := intBounds[field]; ok {
				return fmt.Errorf("line %d: %s: %s", n.Line, label, b.problem(field, n.Value))
			}
			return fmt.Errorf("line %d: %s: integer %s is out of range", n.Line, label, n.Value)
		}
		v.SetInt(i)
		return nil
	}
	return fmt.Errorf("line %d: %s: unsupported field type %s", n.Line, label, v.Type())
}

// intRe is YAML 1.2's decimal integer; yaml.v3 tags integers too large for uint64 as
// !!float, so the literal is checked instead of the tag alone.
var intRe = regexp.MustCompile(`^[-+]?[0-9]+$`)

func isIntLiteral(n *yaml.Node) bool {
	return n.Tag == "!!int" || (n.Tag == "!!float" && n.Style == 0 && intRe.MatchString(n.Value))
}

func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, path string, depth int) error {
	name := typeNames[v.Type()]
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: %s: expected a mapping (%s), got %s", n.Line, orRoot(path), name, describe(n))
	}
	fields := jsonFields(v.Type())
	seen := map[string]bool{}
	// Merge keys (<<: *base) are applied first so explicit keys override them.
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := n.Content[i]; k.Tag == "!!merge" {
			if err := d.decodeMerge(n.Content[i+1], v, path, depth); err != nil {
				return err
			}
		}
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Tag == "!!merge" {
			continue
		}
		if k.Kind != yaml.ScalarNode {
			return fmt.Errorf("line %d: %s: keys must be strings", k.Line, orRoot(path))
		}
		idx, ok := fields[k.Value]
		if !ok {
			where := name
			if path != "" {
				where += " " + path
			}
			return fmt.Errorf("line %d: unknown field %q in %s%s", k.Line, k.Value, where, suggest(k.Value, fields))
		}
		if seen[k.Value] {
			return fmt.Errorf("line %d: duplicate field %q in %s", k.Line, k.Value, name)
		}
		seen[k.Value] = true
		sub := k.Value
		if path != "" {
			sub = path + "." + k.Value
		}
		if err := d.decode(val, v.Field(idx), sub, depth+1); err != nil {
			return err
		}
	}
	return nil
}

func (d *decoder) decodeMerge(n *yaml.Node, v reflect.Value, path string, depth int) error {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if n.Kind == yaml.SequenceNode {
		// Earlier maps in a merge list take precedence, so apply them last.
		for i := len(n.Content) - 1; i >= 0; i-- {
			if err := d.decode(n.Content[i], v, path, depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	return d.decode(n, v, path, depth+1)
}

// decodeAnnotations accepts {k: v} and the spec's [{k1: v1}, {k2: v2}].
func (d *decoder) decodeAnnotations(n *yaml.Node, v reflect.Value, label string, depth int) error {
	out := Annotations{}
	add := func(m *yaml.Node) error {
		for m.Kind == yaml.AliasNode && m.Alias != nil {
			m = m.Alias
		}
		if m.Kind != yaml.MappingNode {
			return fmt.Errorf("line %d: %s: expected key: value pairs, got %s", m.Line, label, describe(m))
		}
		return d.stringPairs(m, out, label)
	}
	switch n.Kind {
	case yaml.MappingNode:
		if err := add(n); err != nil {
			return err
		}
	case yaml.SequenceNode:
		for _, item := range n.Content {
			if err := add(item); err != nil {
				return err
			}
		}
	default:
		return fmt.Errorf("line %d: %s: expected a mapping or a list of mappings, got %s", n.Line, label, describe(n))
	}
	v.Set(reflect.ValueOf(out))
	return nil
}

// stringPairs adds the key: value pairs of mapping m to out; keys and values are strings
// (a null value is ""), and a key given twice is an error.
func (d *decoder) stringPairs(m *yaml.Node, out map[string]string, label string) error {
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, val := m.Content[i], m.Content[i+1]
		d.budget -= 2
		if d.budget < 0 {
			return fmt.Errorf("line %d: config is too large", k.Line)
		}
		for val.Kind == yaml.AliasNode && val.Alias != nil {
			val = val.Alias
		}
		if k.Kind != yaml.ScalarNode || val.Kind != yaml.ScalarNode {
			return fmt.Errorf("line %d: %s: keys and values must be strings", k.Line, label)
		}
		if _, dup := out[k.Value]; dup {
			return fmt.Errorf("line %d: %s: duplicate key %q", k.Line, label, k.Value)
		}
		if val.Tag == "!!null" {
			out[k.Value] = ""
		} else {
			out[k.Value] = val.Value
		}
	}
	return nil
}

// jsonFields maps json tag names to struct field indexes; the model's json tags
// are the YAML field names.
func jsonFields(t reflect.Type) map[string]int {
	m := make(map[string]int, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		m[name] = i
	}
	return m
}

// suggest names a known field differing only in case, a common typo
// (e.g. "workingdir" for "workingDir").
func suggest(key string, fields map[string]int) string {
	for f := range fields {
		if strings.EqualFold(f, key) {
			return fmt.Sprintf(" (did you mean %q?)", f)
		}
	}
	return ""
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		v := n.Value
		if len(v) > 40 {
			v = v[:40] + "..."
		}
		return fmt.Sprintf("%q", v)
	}
	return "an unsupported node"
}

func orRoot(path string) string {
	if path == "" {
		return "config"
	}
	return path
}
