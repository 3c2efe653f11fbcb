package cli

import "flag"

// ParseArgs parses args with fs and returns the words that are not flags.
// Unlike fs.Parse, which stops at the first word, it goes on after each
// word, so that flags may come after a subcommand and its arguments too:
// "xtls-file send -v bob@example.org/x notes.txt" means what
// "xtls-file -v send bob@example.org/x notes.txt" means. After "--" every
// argument is a word.
func ParseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var words []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return words, nil
		}
		if i := len(args) - len(rest); i > 0 && args[i-1] == "--" {
			return append(words, rest...), nil
		}
		words = append(words, rest[0])
		args = rest[1:]
	}
}
