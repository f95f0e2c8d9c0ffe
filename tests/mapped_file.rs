//! Framed arrays sent from a mapped file and received into one (`ringxfer::file`,
//! `Engine::recv_header` + `Engine::recv_payload_into`), on both backends: byte-exact, the
//! rejection rule for an `out` of the wrong length, and a peer closing mid-payload.

mod util;

use std::os::unix::net::UnixStream;
use std::thread;

use ringxfer::file::{MappedFile, MappedFileMut};
use ringxfer::{Error, FrameError, Order};
use util::*;

/// 300 000 big-endian `>u4` elements, shape (600, 500), Fortran order: 1.2 MB, larger than a
/// socket buffer so the payload really streams into the mapping.
const SHAPE: [u64; 2] = [600, 500];

fn payload() -> Vec<u8> {
    let mut v = vec![0u8; 600 * 500 * 4];
    fill_pattern(&mut v, 17);
    v
}

both_backends! {
    fn file_to_file(backend) {
        let dir = tmpdir("mapped_file", &format!("{backend}"));
        let src = write_file(&dir, "src.bin", &payload());
        let dtype: ringxfer::dtype::DType = ">u4".parse().unwrap();
        let (a, b) = UnixStream::pair().unwrap();
        let o = opts(backend);
        let o2 = o.clone();
        let tx = thread::spawn(move || {
            let m = MappedFile::open(std::path::Path::new(&src)).unwrap();
            engine(&o2).send_array_bytes(&a, dtype, m.bytes(), &SHAPE, Order::F)
        });
        let mut e = engine(&o);
        let h = e.recv_header(&b).unwrap();
        assert_eq!((h.dtype, &h.shape[..], h.order, h.payload_len), (dtype, &SHAPE[..], Order::F, 1_200_000));
        let out = dir.join("out.bin");
        let mut m = MappedFileMut::create_new(&out, h.payload_len).unwrap();
        e.recv_payload_into(&b, &h, m.bytes_mut()).unwrap();
        m.flush().unwrap();
        tx.join().unwrap().unwrap();
        drop(m);
        assert_bytes_eq(&std::fs::read(&out).unwrap(), &payload(), "received file");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn wrong_length_is_consumed(backend) {
        let (a, b) = UnixStream::pair().unwrap();
        let o = opts(backend);
        let o2 = o.clone();
        let tx = thread::spawn(move || {
            let mut e = engine(&o2);
            e.send_array(&a, &[1u16, 2, 3], &[3], Order::C)?;
            e.send_array(&a, &[7u16, 8], &[2], Order::C)
        });
        let mut e = engine(&o);
        let h = e.recv_header(&b).unwrap();
        let mut small = [0xEEu8; 4];
        match e.recv_payload_into(&b, &h, &mut small) {
            Err(Error::Frame(FrameError::ShapeMismatch { shape, needed, len })) => {
                assert_eq!((shape, needed, len), (vec![3], 3, 2));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(small, [0xEE; 4], "out untouched");
        // The rejected message was consumed: the next one arrives whole.
        let h = e.recv_header(&b).unwrap();
        let mut out = [0u8; 4];
        e.recv_payload_into(&b, &h, &mut out).unwrap();
        assert_eq!(out, bytemuck::cast::<[u16; 2], [u8; 4]>([7, 8]));
        tx.join().unwrap().unwrap();
    }

    fn peer_closing_mid_payload(backend) {
        let (a, b) = tcp_pair();
        let h = ringxfer::Header::new("u1".parse().unwrap(), &[1000], Order::C).unwrap();
        let mut bytes = h.encode();
        bytes.extend_from_slice(&[5u8; 400]);
        raw_write_then_shutdown(&a, &bytes);
        drop(a);
        let mut e = engine(&opts(backend));
        let got = e.recv_header(&b).unwrap();
        assert_eq!(got.payload_len, 1000);
        let mut out = vec![0u8; 1000];
        match e.recv_payload_into(&b, &got, &mut out) {
            Err(Error::UnexpectedEof { transferred, expected }) => {
                let hl = h.encoded_len() as u64;
                assert_eq!((transferred, expected), (hl + 400, hl + 1000 + 8));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(&out[..400], &[5u8; 400][..]);
    }
}
