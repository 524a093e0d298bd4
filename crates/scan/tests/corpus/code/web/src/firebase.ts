import { initializeApp } from 'firebase/app';

const firebaseConfig = {
  apiKey: 'AIzaTmai9wkazHU8Nu8co7ocZNxq7hNPavew52j',
  authDomain: 'acme-web.firebaseapp.com',
  projectId: 'acme-web',
  appId: '1:046831787208:web:6e5ad3f5a468a1a409b7d0',
};

export const app = initializeApp(firebaseConfig);

// Mapbox public token is fine to ship; the secret one lives in the server.
export const MAPBOX_PUBLIC = 'pk.eyJ1IjoiMxqHkt3ZL3nnlUiH84tJE2nFVbtdkLHdfkEC28Y39AnrSJNOs8RotmbXmXoq.Sti6Hj61gVD3czqavujEba';

export async function sendMail(to: string) {
  const res = await fetch('https://api.sendgrid.com/v3/mail/send', {
    headers: {
      Authorization: `Bearer SG.XRdXaze1BTBNU8w1R0YY0v.54KbEeIFk80XYADs0S0RpY5Ek5zpTk5U2Il5u5txbvn`,
    },
  });
  return res.ok;
}

// integrity of the vendored bundle
export const INTEGRITY = 'sha512-jENlLbSlKlpOGDq+4ysqA6RiX1TP7cIrGuZzmMeM3wHGvMaHFFfkXxK1I6ei6bkY9ICRPnVo1fgSUdlU8v5Igw==';
export const PLACEHOLDER_KEY = 'AIza' + 'SyXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX';

