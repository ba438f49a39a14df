package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

func versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "print the eventkit version, the Go version and the VCS revision",
		Long: "Print the version of the eventkit module the binary was built from (\"(devel)\" for a build\n" +
			"without one), the Go version and platform, and the VCS revision when the build recorded it.",
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			info, _ := debug.ReadBuildInfo()
			printVersion(cmd.OutOrStdout(), info)
			return nil
		},
	}
}

// printVersion prints what info, which may be nil, says about the build.
func printVersion(out io.Writer, info *debug.BuildInfo) {
	version, goVersion := "", runtime.Version()
	var revision, vcsTime, modified string
	if info != nil {
		version = info.Main.Version
		if info.GoVersion != "" {
			goVersion = info.GoVersion
		}
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				revision = s.Value
			case "vcs.time":
				vcsTime = s.Value
			case "vcs.modified":
				modified = s.Value
			}
		}
	}
	if version == "" {
		version = "(devel)"
	}
	fmt.Fprintf(out, "eventkit %s\n", version)
	fmt.Fprintf(out, "go       %s %s/%s\n", goVersion, runtime.GOOS, runtime.GOARCH)
	if revision != "" {
		fmt.Fprintf(out, "revision %s", revision)
		if vcsTime != "" {
			fmt.Fprintf(out, " (%s)", vcsTime)
		}
		if modified == "true" {
			fmt.Fprint(out, ", with uncommitted changes")
		}
		fmt.Fprintln(out)
	}
}
