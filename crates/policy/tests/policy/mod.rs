mod defaults;
mod fixture;
mod issuance;
mod loading;
mod samples;
