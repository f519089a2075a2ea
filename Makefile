# koji-adjutant: build and install where a distribution package would put things.
#
#   make                                   cargo build --release (the two binaries)
#   make install PREFIX=/usr [DESTDIR=…]   install (after `make` as a normal user)
#   make uninstall PREFIX=/usr [DESTDIR=…] remove what install put there (a kojid.conf
#                                          that was changed is kept)
#
# PREFIX defaults to /usr/local; configuration goes to /etc when PREFIX is /usr,
# otherwise to $(PREFIX)/etc. BIN and FULL_BIN name the binaries to install (default:
# the release build in CARGO_TARGET_DIR or ./target): `koji-adjutant`, the command (a
# small front that runs containers itself), and `koji-adjutant-full`, the daemon and the
# rest of the CLI, which the front executes from $(BINDIR)/../libexec/koji-adjutant/
# (docs/adr/0008-front-binary.md). STRIP=1 strips them. docs/operator-guide.md, "Install".

PREFIX      ?= /usr/local
DESTDIR     ?=
BINDIR      ?= $(PREFIX)/bin
SBINDIR     ?= $(PREFIX)/sbin
# Where the front looks for the full program: next to itself, or here (relative to BINDIR).
FULLDIR     := $(abspath $(BINDIR)/../libexec/koji-adjutant)
ifeq ($(PREFIX),/usr)
SYSCONFDIR  ?= /etc
else
SYSCONFDIR  ?= $(PREFIX)/etc
endif
LIBDIR_SD   ?= $(PREFIX)/lib
UNITDIR     ?= $(LIBDIR_SD)/systemd/system
SYSUSERSDIR ?= $(LIBDIR_SD)/sysusers.d
TMPFILESDIR ?= $(LIBDIR_SD)/tmpfiles.d
DOCDIR      ?= $(PREFIX)/share/doc/koji-adjutant

CARGO            ?= cargo
CARGO_TARGET_DIR ?= target
BIN              ?= $(CARGO_TARGET_DIR)/release/koji-adjutant
FULL_BIN         ?= $(CARGO_TARGET_DIR)/release/koji-adjutant-full

INSTALL      ?= install
# STRIP=1 installs the binary without symbols (the release build keeps line tables for
# backtraces; distribution packagers strip into their debuginfo packages themselves).
STRIP        ?=
INSTALL_BIN  := $(INSTALL) -m 0755 $(if $(filter 1 yes true,$(STRIP)),-s)
DOCS         := README.md $(wildcard docs/*.md)
DOC_EXAMPLES := config/kojid.conf config/image-policy.json

.PHONY: all build install uninstall check-bin

all: build

build:
	$(CARGO) build --release --locked --bin koji-adjutant --bin koji-adjutant-full

# The binaries are built only when they are missing (`sudo make install` after `make`).
$(BIN) $(FULL_BIN):
	$(CARGO) build --release --locked --bin koji-adjutant --bin koji-adjutant-full

check-bin: $(BIN) $(FULL_BIN)
	@for b in "$(BIN)" "$(FULL_BIN)"; do \
		test -x "$$b" || { echo "make: $$b is not an executable" >&2; exit 1; }; \
	done

install: check-bin
	$(INSTALL) -d "$(DESTDIR)$(BINDIR)" "$(DESTDIR)$(SBINDIR)" "$(DESTDIR)$(UNITDIR)" \
		"$(DESTDIR)$(SYSUSERSDIR)" "$(DESTDIR)$(TMPFILESDIR)" "$(DESTDIR)$(DOCDIR)" \
		"$(DESTDIR)$(SYSCONFDIR)/kojid" "$(DESTDIR)$(FULLDIR)"
	$(INSTALL_BIN) "$(BIN)" "$(DESTDIR)$(BINDIR)/koji-adjutant"
	$(INSTALL_BIN) "$(FULL_BIN)" "$(DESTDIR)$(FULLDIR)/koji-adjutant-full"
	@# The kojid name: the binary behaves as `koji-adjutant daemon` when run as kojid.
	@# A real kojid (the koji-builder package) is left alone.
	@if [ -e "$(DESTDIR)$(SBINDIR)/kojid" ] && [ ! -L "$(DESTDIR)$(SBINDIR)/kojid" ]; then \
		echo "make: keeping $(DESTDIR)$(SBINDIR)/kojid (not ours: remove the koji-builder package to use the kojid name)" >&2; \
	else \
		echo "ln -sfn $(BINDIR)/koji-adjutant $(DESTDIR)$(SBINDIR)/kojid"; \
		ln -sfn "$(BINDIR)/koji-adjutant" "$(DESTDIR)$(SBINDIR)/kojid"; \
	fi
	sed 's|/usr/bin/koji-adjutant|$(BINDIR)/koji-adjutant|g; s|/usr/share/doc/koji-adjutant|$(DOCDIR)|g' \
		config/koji-adjutant.service > "$(DESTDIR)$(UNITDIR)/koji-adjutant.service.tmp"
	chmod 0644 "$(DESTDIR)$(UNITDIR)/koji-adjutant.service.tmp"
	mv -f "$(DESTDIR)$(UNITDIR)/koji-adjutant.service.tmp" "$(DESTDIR)$(UNITDIR)/koji-adjutant.service"
	$(INSTALL) -m 0644 config/koji-adjutant.sysusers.conf "$(DESTDIR)$(SYSUSERSDIR)/koji-adjutant.conf"
	$(INSTALL) -m 0644 config/koji-adjutant.tmpfiles.conf "$(DESTDIR)$(TMPFILESDIR)/koji-adjutant.conf"
	@# The sample configuration only if there is none (an existing kojid.conf works as it is).
	@if [ -e "$(DESTDIR)$(SYSCONFDIR)/kojid/kojid.conf" ]; then \
		echo "make: keeping the existing $(DESTDIR)$(SYSCONFDIR)/kojid/kojid.conf" >&2; \
	else \
		echo "$(INSTALL) -m 0640 config/kojid.conf $(DESTDIR)$(SYSCONFDIR)/kojid/kojid.conf"; \
		$(INSTALL) -m 0640 config/kojid.conf "$(DESTDIR)$(SYSCONFDIR)/kojid/kojid.conf"; \
	fi
	$(INSTALL) -m 0644 $(DOCS) $(DOC_EXAMPLES) "$(DESTDIR)$(DOCDIR)/"

uninstall:
	rm -f "$(DESTDIR)$(BINDIR)/koji-adjutant" "$(DESTDIR)$(FULLDIR)/koji-adjutant-full"
	-rmdir "$(DESTDIR)$(FULLDIR)" 2>/dev/null
	@if [ -L "$(DESTDIR)$(SBINDIR)/kojid" ] && [ "$$(readlink "$(DESTDIR)$(SBINDIR)/kojid")" = "$(BINDIR)/koji-adjutant" ]; then \
		echo "rm -f $(DESTDIR)$(SBINDIR)/kojid"; rm -f "$(DESTDIR)$(SBINDIR)/kojid"; \
	fi
	rm -f "$(DESTDIR)$(UNITDIR)/koji-adjutant.service" \
		"$(DESTDIR)$(SYSUSERSDIR)/koji-adjutant.conf" \
		"$(DESTDIR)$(TMPFILESDIR)/koji-adjutant.conf"
	rm -f $(addprefix "$(DESTDIR)$(DOCDIR)/,$(addsuffix ",$(notdir $(DOCS) $(DOC_EXAMPLES))))
	-rmdir "$(DESTDIR)$(DOCDIR)" 2>/dev/null
	@# The configuration is removed only if it is still the sample.
	@if cmp -s config/kojid.conf "$(DESTDIR)$(SYSCONFDIR)/kojid/kojid.conf"; then \
		echo "rm -f $(DESTDIR)$(SYSCONFDIR)/kojid/kojid.conf"; rm -f "$(DESTDIR)$(SYSCONFDIR)/kojid/kojid.conf"; \
		rmdir "$(DESTDIR)$(SYSCONFDIR)/kojid" 2>/dev/null || true; \
	elif [ -e "$(DESTDIR)$(SYSCONFDIR)/kojid/kojid.conf" ]; then \
		echo "make: keeping $(DESTDIR)$(SYSCONFDIR)/kojid/kojid.conf (changed from the sample)" >&2; \
	fi
