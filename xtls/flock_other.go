//go:build !unix

package xtls

import (
	"os"
	"sync"
)

// On systems without flock, FilePinStore serialises writers within one
// process only; concurrent writes from several processes may lose pins.
var fileLock sync.Mutex

func lockFile(*os.File) error {
	fileLock.Lock()
	return nil
}

func unlockFile(*os.File) { fileLock.Unlock() }

// syncUnsupported reports whether a directory sync failed only because the
// file system cannot sync directories; elsewhere than Unix it is not
// attempted seriously, so every failure is tolerated.
func syncUnsupported(error) bool { return true }
