mod defaults;
mod fixture;
mod loading;
mod samples;
