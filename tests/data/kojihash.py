#!/usr/bin/python3
# The oracle for src/rpmfile/kojihash.rs: koji's Rpmdiff(f, f, ignore='S5TN').kojihash()
# data, computed with librpm's Python bindings (python3-rpm) the way koji/rpmdiff.py does
# it: the same tags, dependency triples, file fields and json.dumps(sort_keys=True).
# Usage: kojihash.py FILE.rpm  → prints the JSON, then the sha256 on a second line.
import hashlib, json, os, sys
import rpm

TAGS = (rpm.RPMTAG_NAME, rpm.RPMTAG_SUMMARY, rpm.RPMTAG_DESCRIPTION, rpm.RPMTAG_GROUP,
        rpm.RPMTAG_LICENSE, rpm.RPMTAG_URL, rpm.RPMTAG_PREIN, rpm.RPMTAG_POSTIN,
        rpm.RPMTAG_PREUN, rpm.RPMTAG_POSTUN)
ts = rpm.ts()
ts.setVSFlags(rpm._RPMVSF_NOSIGNATURES | rpm._RPMVSF_NODIGESTS)
fd = os.open(sys.argv[1], os.O_RDONLY)
h = ts.hdrFromFdno(fd)
os.close(fd)
data = {'tags': {}, 'ignore': 'S5TN'}
for t in TAGS:
    data['tags'][t] = h[t]
for name in ('REQUIRES', 'PROVIDES', 'CONFLICTS', 'OBSOLETES'):
    flags = h[name[:-1] + 'FLAGS']
    if not isinstance(flags, list):
        flags = [flags]
    o = list(zip(h[name], flags, h[name[:-1] + 'VERSION']))
    if name == 'PROVIDES':
        nv = (h['name'], rpm.RPMSENSE_EQUAL, "%s-%s" % (h['version'], h['release']))
        o = [e for e in o if e != nv]
    data[name] = sorted(o)
files = {}
for f in rpm.files(h):
    files[f.name] = [None, f.mode, None, f.fflags, f.rdev, f.inode, None, f.state,
                     f.vflags, f.user, f.group, None]
data['files'] = files
s = json.dumps(data, sort_keys=True)
print(s)
print(hashlib.sha256(s.encode('utf-8')).hexdigest())
