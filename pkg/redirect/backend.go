package redirect

import "fmt"

// Backend is what is known about one iptables backend in the pod's network
// namespace, for ChooseBackend.
type Backend struct {
	Installed bool // its restore binary was found
	Rules     int  // rules its save binaries list (every table, both families)
	NATWorks  bool // a nat-table probe through it succeeded (asked only when needed)
}

// ChooseBackend is the `--iptables-mode=auto` decision of DESIGN.md: the
// backend already holding rules in the pod's namespace (the one holding
// more, if both do), else nft when its nat-table probe works, else legacy.
// The second result says why, for the log and --dry-run.
func ChooseBackend(nft, legacy Backend) (Mode, string, error) {
	switch {
	case nft.Rules > legacy.Rules && nft.Installed:
		return ModeNFT, fmt.Sprintf("nft holds %d rules in this network namespace, legacy %d", nft.Rules, legacy.Rules), nil
	case legacy.Rules > nft.Rules && legacy.Installed:
		return ModeLegacy, fmt.Sprintf("legacy holds %d rules in this network namespace, nft %d", legacy.Rules, nft.Rules), nil
	case nft.Installed && nft.NATWorks:
		return ModeNFT, "no backend holds rules here and the nft nat table works", nil
	case legacy.Installed:
		if nft.Installed {
			return ModeLegacy, "no backend holds rules here and the nft nat table does not work", nil
		}
		return ModeLegacy, "no backend holds rules here and nft is not installed", nil
	}
	return "", "", fmt.Errorf("no iptables backend installed: neither iptables-nft-restore nor iptables-legacy-restore is in PATH; the image needs the iptables package")
}
