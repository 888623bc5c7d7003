// How long a batch would take at the account's capacity: its images and the account's unfinished
// ones ahead of it go through `capacity` slots, one provider run time per wave.
export const estimateDurationSeconds = (images: number, backlogImages: number, capacity: number, runMs: number) =>
  capacity <= 0 ? null : Math.ceil(Math.ceil((images + backlogImages) / capacity) * runMs / 1000);
