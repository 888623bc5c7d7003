import sharp from "sharp";

// Small scenes drawn on the spot (nothing binary in the repository): each has a clear subject in the
// middle, so what the expansion added around it is easy to see.
const scene = (width: number, height: number, sky: [string, string], ground: string, sun: string, label: string) => `
<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}">
  <defs><linearGradient id="sky" x1="0" y1="0" x2="0" y2="1"><stop offset="0" stop-color="${sky[0]}"/><stop offset="1" stop-color="${sky[1]}"/></linearGradient></defs>
  <rect width="100%" height="100%" fill="url(#sky)"/>
  <circle cx="${width * 0.5}" cy="${height * 0.42}" r="${Math.min(width, height) * 0.16}" fill="${sun}"/>
  <path d="M0 ${height * 0.72} Q ${width * 0.25} ${height * 0.55} ${width * 0.5} ${height * 0.7} T ${width} ${height * 0.66} V ${height} H 0 Z" fill="${ground}"/>
  <text x="${width / 2}" y="${height * 0.93}" font-family="sans-serif" font-size="${Math.round(height / 14)}" text-anchor="middle" fill="#fff">${label}</text>
</svg>`;

export const demoScenes = [
  { file: "sunrise.png", width: 480, height: 320, svg: scene(480, 320, ["#ffb347", "#ffcc99"], "#5a8f29", "#fff3b0", "sunrise") },
  { file: "noon.png", width: 400, height: 400, svg: scene(400, 400, ["#4a90e2", "#bde0fe"], "#3c7a1e", "#fffbe0", "noon") },
  { file: "dusk.png", width: 360, height: 480, svg: scene(360, 480, ["#6a4c93", "#f28482"], "#2d3047", "#ffd166", "dusk") },
  { file: "night.jpg", width: 500, height: 300, svg: scene(500, 300, ["#0b132b", "#1c2541"], "#0b3d2e", "#e0e1dd", "night") },
] as const;

export const renderScene = (svg: string, file: string) => {
  const image = sharp(Buffer.from(svg));
  return file.endsWith(".jpg") ? image.jpeg({ quality: 88 }).toBuffer() : image.png().toBuffer();
};
