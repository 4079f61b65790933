package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// maxCopyDepth stops symlink loops inside src (a link to an ancestor directory).
const maxCopyDepth = 64

// copyTree copies the regular files under src into dst (the init container's
// "copy-files" subcommand: ConfigMap volume -> writable emptyDir). A ConfigMap volume
// keeps files in a "..<timestamp>" directory reached through "..data" symlinks, so links
// are dereferenced, "..*" entries themselves are skipped, and a link resolving outside
// src is an error. Files get mode 0644 and directories 0755; other file types are
// ignored.
func copyTree(src, dst string) error {
	root, err := filepath.EvalSymlinks(src)
	if err != nil {
		return fmt.Errorf("copy-files: %w", err)
	}
	if root, err = filepath.Abs(root); err != nil {
		return fmt.Errorf("copy-files: %w", err)
	}
	return copyDir(root, root, dst, 0)
}

func copyDir(root, dir, dst string, depth int) error {
	if depth > maxCopyDepth {
		return fmt.Errorf("copy-files: %s: directories nested deeper than %d (symlink loop?)", dir, maxCopyDepth)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("copy-files: %w", err)
	}
	// Only directories made here get their mode fixed: the top one is usually the emptyDir
	// mount (/keptn), owned by root and writable by all, where chmod fails for a non-root
	// init container and would leave /keptn read-only for a task running as another user.
	_, statErr := os.Lstat(dst)
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return fmt.Errorf("copy-files: %w", err)
	}
	if os.IsNotExist(statErr) {
		if err := os.Chmod(dst, 0o755); err != nil {
			return fmt.Errorf("copy-files: %w", err)
		}
	}
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, "..") {
			continue
		}
		p := filepath.Join(dir, name)
		real, err := filepath.EvalSymlinks(p)
		if err != nil {
			return fmt.Errorf("copy-files: %w", err)
		}
		if !within(root, real) {
			return fmt.Errorf("copy-files: %s points outside %s", p, root)
		}
		fi, err := os.Stat(real)
		if err != nil {
			return fmt.Errorf("copy-files: %w", err)
		}
		target := filepath.Join(dst, name)
		switch {
		case fi.IsDir():
			if err := copyDir(root, real, target, depth+1); err != nil {
				return err
			}
		case fi.Mode().IsRegular():
			if err := copyFile(real, target); err != nil {
				return fmt.Errorf("copy-files: %w", err)
			}
		}
	}
	return nil
}

func within(root, p string) bool {
	rel, err := filepath.Rel(root, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) && !filepath.IsAbs(rel)
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Chmod(dst, 0o644)
}
