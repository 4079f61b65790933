package config

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"
)

// String names a level as in messages: "service", "stage", "project".
func (l Level) String() string {
	switch l {
	case LevelService:
		return "service"
	case LevelStage:
		return "stage"
	case LevelProject:
		return "project"
	}
	return fmt.Sprintf("Level(%d)", int(l))
}

// ParseLevel is the inverse of Level.String.
func ParseLevel(s string) (Level, error) {
	for _, l := range []Level{LevelService, LevelStage, LevelProject} {
		if l.String() == s {
			return l, nil
		}
	}
	return 0, fmt.Errorf("unknown config level %q", s)
}

// DirSource reads resources from a directory tree laid out as
// <Root>/<project>[/<stage>[/<service>]]/<path> for the project, stage and
// service levels. CommitID is ignored. All access goes through os.Root, so
// neither ".." nor symlinks can reach outside Root.
type DirSource struct {
	Root string
	// Flat makes Root one level's directory: every ref and level reads from Root itself
	// (render's --files DIR, the directory beside job/).
	Flat bool
}

// dir is the slash-separated directory of a level below Root.
func (d DirSource) dir(ref Ref, level Level) (string, error) {
	if d.Flat {
		return ".", nil
	}
	return levelDir(ref, level)
}

// levelDir is the slash-separated directory of a level below Root.
func levelDir(ref Ref, level Level) (string, error) {
	parts := []string{ref.Project}
	switch level {
	case LevelService:
		parts = append(parts, ref.Stage, ref.Service)
	case LevelStage:
		parts = append(parts, ref.Stage)
	case LevelProject:
	default:
		return "", fmt.Errorf("unknown level %d", int(level))
	}
	for _, p := range parts {
		if p == "" || p == "." || p == ".." || strings.ContainsAny(p, "/\\\x00") {
			return "", fmt.Errorf("invalid project/stage/service name %q", p)
		}
	}
	return strings.Join(parts, "/"), nil
}

func (d DirSource) open(ref Ref, level Level, p string) (*os.Root, string, error) {
	dir, err := d.dir(ref, level)
	if err != nil {
		return nil, "", err
	}
	if p != "" {
		if p, err = CleanFilePath(p); err != nil {
			return nil, "", err
		}
		dir = path.Join(dir, p)
	}
	root, err := os.OpenRoot(d.Root)
	if err != nil {
		return nil, "", fmt.Errorf("opening resource directory: %w", err)
	}
	return root, dir, nil
}

// Get implements Source.
func (d DirSource) Get(_ context.Context, ref Ref, level Level, p string) ([]byte, error) {
	root, name, err := d.open(ref, level, p)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	fi, err := root.Stat(name)
	if err != nil {
		return nil, wrapNotExist(err, level, p)
	}
	if !fi.Mode().IsRegular() {
		// A directory is "not found" as a file so callers can fall back to List.
		return nil, fmt.Errorf("%s resource %s is not a regular file: %w", level, p, ErrNotFound)
	}
	b, err := root.ReadFile(name)
	if err != nil {
		return nil, wrapNotExist(err, level, p)
	}
	return b, nil
}

// List implements Source; paths are relative to the level's directory.
func (d DirSource) List(_ context.Context, ref Ref, level Level, dir string) ([]string, error) {
	root, base, err := d.open(ref, level, dir)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	prefix, _ := d.dir(ref, level)
	var out []string
	err = fs.WalkDir(root.FS(), base, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.IsDir() {
			return nil
		}
		if e.Type()&fs.ModeSymlink != 0 {
			// Keep only links that resolve to a regular file inside Root.
			fi, err := root.Stat(p)
			if err != nil || !fi.Mode().IsRegular() {
				return nil
			}
		} else if !e.Type().IsRegular() {
			return nil
		}
		out = append(out, strings.TrimPrefix(p, prefix+"/"))
		return nil
	})
	if err != nil {
		return nil, wrapNotExist(err, level, dir)
	}
	return out, nil
}

func wrapNotExist(err error, level Level, p string) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s resource %s: %w", level, p, ErrNotFound)
	}
	return fmt.Errorf("%s resource %s: %w", level, p, err)
}
