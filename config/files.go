package config

import (
	"context"
	"errors"
	"fmt"
	"sort"
)

// CollectFiles fetches a task's files from the level its config was found at.
// Each entry (leading "/" optional) is read as a file; if there is no such file
// it is treated as a directory and every file below it is read. Keys are clean
// relative paths ("locust/basic.py"). It fails when an entry matches nothing or
// when the total size exceeds maxBytes (maxBytes <= 0: no limit).
func CollectFiles(ctx context.Context, src Source, ref Ref, level Level, paths []string, maxBytes int) (map[string][]byte, error) {
	out := map[string][]byte{}
	total := 0
	add := func(name string, b []byte) error {
		if _, dup := out[name]; dup {
			return nil
		}
		total += len(b)
		if maxBytes > 0 && total > maxBytes {
			return fmt.Errorf("task files are too large: %d bytes after adding %s (%d bytes), the limit is %d bytes",
				total, name, len(b), maxBytes)
		}
		out[name] = b
		return nil
	}
	for _, entry := range paths {
		p, err := CleanFilePath(entry)
		if err != nil {
			return nil, err
		}
		b, err := src.Get(ctx, ref, level, p)
		if err == nil {
			if err := add(p, b); err != nil {
				return nil, err
			}
			continue
		}
		if !errors.Is(err, ErrNotFound) {
			return nil, fmt.Errorf("reading file %s: %w", p, err)
		}
		names, err := src.List(ctx, ref, level, p)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return nil, fmt.Errorf("listing directory %s: %w", p, err)
		}
		if len(names) == 0 {
			return nil, fmt.Errorf("file or directory %s %w in %s resources%s", p, ErrNotFound, level, atCommit(ref.At(level)))
		}
		sort.Strings(names)
		for _, n := range names {
			name, err := CleanFilePath(n)
			if err != nil {
				return nil, fmt.Errorf("directory %s: listed resource: %w", p, err)
			}
			b, err := src.Get(ctx, ref, level, name)
			if err != nil {
				return nil, fmt.Errorf("reading file %s: %w", name, err)
			}
			if err := add(name, b); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}
