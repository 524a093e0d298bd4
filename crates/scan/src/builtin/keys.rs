//! Private keys: PEM blocks (PKCS#1, PKCS#8, EC, DSA, OpenSSH), PGP, PuTTY, age.

use super::Spec;
use crate::rule::{Check, Reach, Tier};

/// Longest private key block we look for: a PGP key with subkeys fits.
const KEY_BLOCK_REACH: usize = 32 * 1024;

pub(crate) const SPECS: &[Spec] = &[
    Spec {
        keywords: &["private key"],
        entropy: None,
        check: Check::PrivateKey,
        tier: Tier::Broad,
        reach: Reach::Forward(KEY_BLOCK_REACH),
        positives: &[
            "-----BEGIN RSA PRIVATE KEY-----\n3CctOzwIa2ZLtyIvmt5s7Ud09uJ5oNeKGOnkxs4cqO0ckvD7krEQlQR2XDwalZS2\nTRpNIWCmpYoGR86/eaCyzApi1C6l+57/QQ3yRlIlYNhpkww79ib+lQpZ9IHFYTum\nU/YxbpkxzB7Ac8hJQHGVn/9Jb5G8NmNQCNDX3oIrzRn8jdvdQZN46P+K7fAlVxfa\nsAAUmdSgPBb1cvZO57gXLHyvf/iGDaGFNWdrOFEX4cdplp0tWYdcwKsBCN/4e8F0\npgpR76UiqX44Iwu7A4hxUnP/EDYFO1H0jZjkHecCPxRrIsUbZTGRqud1oh/va7AI\nin9t+h5/gS8luj0nzcumNejtM3K9y6R8963DS2r/lDKF3lNwUMSlfKcj8a8Edhjh\neFyXtHFZ9jx3jlEp+/mq0G/j7rOdytpUomxZ3IJfUdwLPnwM+qJigBFBnOkfb8AP\nNjgIaK6IQScdyownTM8pkAdkcVZTCb9dgf9nI/PTO7uCw7QVR5n/FWKZ3HsDnrcB\nq65zucvxF5a/v9yCHAWiKPVeiUE=\n-----END RSA PRIVATE KEY-----\n",
            "key: |\n  -----BEGIN EC PRIVATE KEY-----\nHeTSaLfyIFRbDGIx8MmiuNrQ68FLI2Z19wRRQBpmnuBUBQOVt+CY7KMVPqNotYfz\nE431S0qkoGGnvHp8w+37UkK7jdhJHiLyen3IcJ0z7aaKaEAJrNNMdNqbCuG7FhXs\n10oZ2St8zl6QEjbKJvrBPPEFNiUT4/SAwbAvKM/BEvLu0yz+idnlwrMS3Gq2Wip5\n1kpg5olr2zZNgU/zmMK2fNHIhWIVR74JlI1Kab7sFwNdOaaAzxlpnRL34AZYcjLa\nBxNog9sO+7Q2IzDFzFRiwHiyAgFIKCeKnz5P5Rj2320DzT2snun4hYu6WBOBq2on\nQ5Z7rF5jvFmEB3XL5KT75FL2cGO9FtjhAgOCaPtzglRrqtKvLazGN/PyidiePHtd\nn+UkZOh9J1Y3mTS3BBCzjwyat5OjR/cLe4RJdA0j0ptpH+7BKu4HOJJpPkSrY2ZI\nMboh5FoUlapX13eNzQO6fGMudo36T23nxtP5U9nHx+iq0/OB78sskmkrVxVIJOK3\nhUZ3sM/rsBishkEzYnfOF+3TkIa+CQ==\n-----END EC PRIVATE KEY-----",
            "-----BEGIN OPENSSH PRIVATE KEY-----\n9bsYFkC9Fp6XLJUfuIYV3EYP8gcpiw0UeqMevfatGWq6TyRjOs964m1klsdMR0X6\nE//TTQZXojUAvtxKHFszNtEpQN8PtAI54C+akkPQYx3fi45GtRgi0X0IcufEj9iD\nRKAY2ljYerDZ2jOj2YUOCkTpaT/o882piTHUxuPhtgJ3rAu8fHdGf3Wb5hbQJ8fU\nIfEGrLJUvyjRKCdyXrovpx5cp2qKbwEO7oAE9HoJ7NDqSj8GpiMR36W/uoVH/hnf\njFJdfsPhOaKTviLo9+UNTvSoeK8rlUdWu5fC8icce32hZHtCybuqdYfG5/meCfqg\n9ozxbm+8NL/AwBQ1t18fL2AcE3Fd7Wp2arCG0/IkfBMof+4ZxTzZjJkcB9Hyltle\nb10oPtp8fxBXImC13dDjKzqrirNp0pxlj7AWG0mdgTeFpv7ucb0LXFeWlfET1ezn\n3f1yG/E8RfEz8IKeiGvNrTpT6CmroRcfs4lwxuYMoXmJOYOJMmrA3eP4G0b4FMP5\nr3m2LVCOwRFGmndBoVY9kl+MSD4gUl9b\n-----END OPENSSH PRIVATE KEY-----",
            "-----BEGIN PRIVATE KEY-----\nNkLC7jbd1zyw7jqzb5ALwyRx6Cq3xPfv8KLeNNaY6tSK8zFhS8cDpdKWV8r2dKuy\nAaxW5XJhg/l16xc5gmUvaJIUnH38sIheI28+4MpH3D204S1CmJ7AUl9SCxW8xUmr\nyqP/16RzLittyZc8EAC9B12FqHvKBIc3phNz4ymzRxzijv6xStCwnMnZCAFHrGj9\nH2l/5i3Cj3V94LxbFzD6MCi/BOophuO6nLtT8i1pqSfWC/UHx3ryXqecq7eAxBhp\nU4p9unmUcWpZ7lCAzz+kLcA2jk2OiTo2kW/YBcRQfmHl0/9jPiYftp0VrDQxK4Fh\no0YlBGgk0C030nkDXkaJvI45xHspEo7Eo101PzYo0F3b+T7azgDGBwt2wVqCwytI\n2AsSlI0fdGo4MZlYEoMGPcJdeRDI/YNQIzCfQ2xe5ma/bvOe9PdynwSk8Y8iu+h8\npmLr3wghTIyn42hPkpcp/7h/rBk6ivhpZjk164NtSivIyEPHj3AGpHmQymbr8U83\nD/XA7l7ZO5TTtg==\n-----END PRIVATE KEY-----",
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nxjdhWPDOoX+IlXUTJ9CMBcmLpYgvE2zAVfmwlKyqedkgTZFENTJH/ahDkaMHpesi\nW3BpUdk52nfJXdCDrLV64PVHM2l6BlllSWwImkcvJZktiG5WewsvkMhp5MTb4cbj\n/9viAco/MwtBF42J0OnzEu7jzdMG51kMEVYy/f+SPkjZVpKqCTSJYuBerTAXTz4W\n8ng9t7HlmEINGDcRa9KQeAspWHVYZLL0A+h+i9YFKb9val55XAKMFVttKhDIRSnC\n7yoiiYrmLMh3mTYoL+8FtHCk7PL8Vz9Nz/RNDiZWjX5ANcgLbzr/hdBdp1YupW0o\nmfjYOYjBU4hQ85CZ+2waTyF080qMNaKobpsgvE3WdDLfysElC65miZRDd9QgJPWt\nFUQwGqyTaLqIjw7Z0WiWivWZ70POxwn+HnfR31IHPZZumiccyfb9rhu6IdO0UXYr\nQQ/EySFMEYR6d7PH4G+6Zavv1K7fSpBJOHOq+4L9gC/F8civolqDgvj2NDc=\n-----END ENCRYPTED PRIVATE KEY-----",
        ],
        negatives: &[
            "-----BEGIN PUBLIC KEY-----\nVhHdNNWyVFwJVuAXzg0xJLvZwKTCKobJ9cQD7dENtTPQxR1Tvc7syQbg+k6xFyQA\nVMfRH9rGkWq5mJ36zqkSv7oi4aD1hMUljUn1P3ETP8Cna6bZwPVGMPBdivBox6Rp\nG65TCvFEtbzZx3x6rEGugQcRg65YCWqMv2ttg7XkRXWk/BOKNXBwSjaUrul6JbUY\n2YzS9ngjmfMvTTEEv9xzTT6XmOJ9q/XeloYi+KGkklLxqZYPTJrQ8M0zUdHGrQuC\nlMfXXUHW25bGNk80/MSL14pq8NYZf5jmvT9/ff7TiM8q1OWLpmCdh1cytXpwSpYL\n3kT+WQlAKT5DGWSYAT0Lp4i6BgB7bVntcf8wzGx3G1yudJixDWM+jrWpb8mBHQ3e\nonvKmT1RwTIJhfPzXp8wIIbSEF/GqefLSJvIvEOa0FgQoZw2ve/RvTeTZSYBag5W\nhbJPI7qiq1nZHtGA4NxZTZNGgqqroVdz8b8Je05LFNzIZp679ugIuTXk1b6iL9Wa\nBH1mJwG2iNhLEw==\n-----END PUBLIC KEY-----",
            "-----BEGIN CERTIFICATE-----\nURGUSTikkFCOyTdTU/4mmtK/TBRz/wdSdt/Ut6rMnvEZXACzlHcUksxIHHRFPiak\nxGwWj9LzV8Zbt1W/tBkPXkSq5aFEWKS1OPgJsLC3vKbA43jc4qIkYi94aum+FX39\nDTu4VHUSPti8oyedLtBgbZWOn7Y3s4cA61QAkHk5T9Ab09ezFVu/V7Hb/KJE/lnR\nFSaNR7ckCikzTvefcFrkuUeR3AGKsOsFldzUmaP3MDa0VmrqqJi95u2LOd/YppCo\nWqxl7MpcoR5HD3rFXiLwUqvhGYCREWiJAWhN1TWqfsAzMdWCyUab3Yz29IJESbu6\nNwJCq64TZndzurayeFefiCBP3lrtmEoot+d+30NVNUB5pyI7ZqmJDmu8m94g1co/\n9ZCcJdlwe0h1Xr1CIQe6tVWlk8Q/g2CZ7INtPeGNFkArCxrVm3BLymGmB7TeQrRF\n6pACD8gzmx1bwtiZkucFYn9zraNnPtcYKACK9CS5VbPJAgN6AGvsBFy0dr5/ycBe\nNfoh8hEbNw2/19WFfnhnW/MEw6sIi1f+R80dJdA=\n-----END CERTIFICATE-----",
            "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA...\n...\n-----END RSA PRIVATE KEY-----",
            "-----BEGIN OPENSSH PRIVATE KEY-----\nXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX\n-----END OPENSSH PRIVATE KEY-----",
            "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQWJQIynNq69Vpdy/JUBxRYQXMOi3yRp8jQ232T2Wdltq1ad7OMW7HcKH6Om7im9vj9PS6ligWe8kR1piUG9d0h9QJl3OoAaArwi2mU/CxqHbK501ZmgUABYZvqFS7/rrbUv6q+IhNPLy/caR+yOUXESXWnwzgCnSHO+e5UGwaJ0RZ9gddEl5/dWuSqQtvrvb4vjbgdPbN9k1+HbhQeTrbb3yuKiewGxbsZvDrv+Ql4VhbuDCJxMeoODT+/cONcLt44jOoJARRnQ+/XAhbzpAjs4WVsbKMg6o7AYjx2pAdsmlW deploy@ci",
        ],
        ..Spec::new(
            "private-key",
            "Private key (PEM: RSA, EC, DSA, PKCS#8, OpenSSH)",
            r"(?P<secret>-----BEGIN[ A-Z0-9_-]{0,100}PRIVATE KEY-----[A-Za-z0-9+/=\s\\:,.-]+?-----END[ A-Z0-9_-]{0,100}PRIVATE KEY-----)",
        )
    },
    Spec {
        keywords: &["pgp private key block"],
        entropy: None,
        check: Check::PrivateKey,
        tier: Tier::Broad,
        reach: Reach::Forward(KEY_BLOCK_REACH),
        positives: &[
            "-----BEGIN PGP PRIVATE KEY BLOCK-----\nComment: release signing <release@acme.dev>\n\nk8ivK8DVb/j2JFPaWt2BR5MbfxTIAelpUxGQkCZgvgvGEOS/b5rsmWqTbEEgTdkC\nGPzzOG/xO44seZ9fV3brpfLiHaed3HSkYDew4ZJJW60LbsrLo0GymueEWbB0Wscu\nwjuA3C3IGVkqpL6HwaYkduIb2mrr7k11Txn6NJx4kijTENVxaLUlUxFrojfOM2wv\nDnxgRtjJFBbR79qBWPGd+a68xU65zKvPDdQaCYvlDS7CokpIpbuKP6CDtq7/LBIx\n=FIhK\n-----END PGP PRIVATE KEY BLOCK-----",
        ],
        negatives: &[
            "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nk50vM9entrLWuGCODgccEZdBjYOFsKEMtPUx8FddDPJslRcVCeqmjpHaB8Efr+8v\nFfzw+/iZzwzzps3ZE/9vsvoPirtC24tLpu4JtHGkt1kRhwbEKPZSu3xiCAsf22wl\n-----END PGP PUBLIC KEY BLOCK-----",
            "-----BEGIN PGP PRIVATE KEY BLOCK-----\n...\n-----END PGP PRIVATE KEY BLOCK-----",
        ],
        ..Spec::new(
            "pgp-private-key-block",
            "PGP private key block",
            r"(?P<secret>-----BEGIN PGP PRIVATE KEY BLOCK-----[A-Za-z0-9+/=\s\\:,.()@<>'_-]+?-----END PGP PRIVATE KEY BLOCK-----)",
        )
    },
    Spec {
        keywords: &["putty-user-key-file-"],
        entropy: None,
        check: Check::PrivateKey,
        tier: Tier::Broad,
        reach: Reach::Forward(8 * 1024),
        positives: &[
            "PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none\nComment: deploy\nPublic-Lines: 2\npRorw07bDDaOSY1HvTcPx3NqWnn2OShwkU13Jobb7P1ARxNxT59CYmFreH7Fx/GC\nYr/HZSGABYM1NmpQ\nPrivate-Lines: 1\nUYl7D37IqKP3WDJSoJvqZY1DYSp6S5GI6gurAnNESaIuwdCTcd4aUlnrzBftS+Ed\nPrivate-MAC: 0d6224540b5ded499508e7e044a67d241f21a49110e96c83a1c90cf1b4f5b48e\n",
        ],
        negatives: &["PuTTY-User-Key-File-3: ssh-ed25519\nPrivate-Lines: 1\n\n"],
        ..Spec::new(
            "putty-private-key",
            "PuTTY private key file",
            r"(?P<secret>PuTTY-User-Key-File-[23]: [^\n]{1,100}\n(?s:.)*?Private-Lines: \d+\r?\n(?:[A-Za-z0-9+/=]+\r?\n)+)",
        )
    },
    Spec {
        keywords: &["age-secret-key-1"],
        entropy: Some(3.5),
        positives: &[
            "# created: 2026-05-02\nAGE-SECRET-KEY-1DDJ737JU25UYQ0DWMV5LVC09G4RXMW0JRUCDQ0QRCW4V582A6CRF0SS2GA",
        ],
        negatives: &[
            "AGE-SECRET-KEY-1GS7WAV6Z5LRRTMLFLMFP",
            "age1FXHFZ0H3C2ZJ4FQ29TKECJVWJTMLUK34ZWJ2MLNCE87E0DVS54DPDWEJQ3",
        ],
        ..Spec::new(
            "age-secret-key",
            "age encryption secret key",
            r"\b(?P<secret>AGE-SECRET-KEY-1[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58})\b",
        )
    },
];
